/* SPDX-License-Identifier: MIT */
/* The Prometheus text exposition (format 0.0.4) of the metrics (metrics.h): every worker's
 * counters summed into a snapshot, then each family printed with its HELP and TYPE, label
 * values escaped, fixed-point numbers without floating point. It counts nothing and serves
 * nothing: the workers count (metrics.h), admin.c asks for the text and sends it. */
#include "sniroute/observe/metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[SR_METRICS_N_ROUTE_KINDS] = {
    [SR_ROUTE_MISS] = "none",
    [SR_ROUTE_EXACT] = "exact",
    [SR_ROUTE_WILDCARD] = "wildcard",
    [SR_ROUTE_DEFAULT] = "default",
};

static const char *const connect_error_names[SR_METRICS_N_CONNECT_ERRORS] = {
    [SR_METRICS_CONNECT_REFUSED] = "refused",         [SR_METRICS_CONNECT_TIMEOUT] = "timeout",
    [SR_METRICS_CONNECT_UNREACHABLE] = "unreachable", [SR_METRICS_CONNECT_RESET] = "reset",
    [SR_METRICS_CONNECT_RESOLVE] = "resolve",         [SR_METRICS_CONNECT_OTHER] = "other",
};

static const char *const limit_names[SR_METRICS_N_LIMITS] = {
    [SR_METRICS_LIMIT_GLOBAL] = "max_connections",
    [SR_METRICS_LIMIT_LISTENER] = "listener_max_connections",
    [SR_METRICS_LIMIT_PER_IP] = "max_connections_per_ip",
    [SR_METRICS_LIMIT_RATE] = "max_new_connections_per_ip",
};

static const char *const quic_status_names[SR_METRICS_N_QUIC_STATUS] = {
    [SR_QUIC_NEED_MORE] = "need_more", [SR_QUIC_FOUND] = "found",
    [SR_QUIC_NO_SNI] = "no_sni",       [SR_QUIC_NOT_QUIC] = "not_quic",
    [SR_QUIC_MALFORMED] = "malformed", [SR_QUIC_ERROR] = "error",
};

/* The outcomes a QUIC flow can end with (the access log's words), in the order shown. */
static const enum sr_metrics_outcome quic_outcomes[] = {
    SR_METRICS_OUTCOME_OK,
    SR_METRICS_OUTCOME_IDLE_TIMEOUT,
    SR_METRICS_OUTCOME_NO_ROUTE,
    SR_METRICS_OUTCOME_NO_SNI,
    SR_METRICS_OUTCOME_MALFORMED,
    SR_METRICS_OUTCOME_TOO_LARGE,
    SR_METRICS_OUTCOME_HELLO_TIMEOUT,
    SR_METRICS_OUTCOME_RESOLVE_FAILED,
    SR_METRICS_OUTCOME_CONNECT_FAILED,
    SR_METRICS_OUTCOME_CONNECT_TIMEOUT,
    SR_METRICS_OUTCOME_BACKEND_RESET,
    SR_METRICS_OUTCOME_DRAINED,
    SR_METRICS_OUTCOME_ERROR,
};

static const uint64_t latency_bounds_us[SR_METRICS_N_LATENCY_BUCKETS - 1] = {
    SR_METRICS_LATENCY_BOUNDS_US};

#define SR_METRICS_OTHER "_other"

/* --- The output buffer ---------------------------------------------------------------- */

/* Grows by doubling; after a failed allocation every append is a no-op and <failed> says so,
 * so the formatter checks once at the end. */
struct wbuf {
    char *base;
    size_t len;
    size_t cap;
    bool failed;
};

static void
wb_put(struct wbuf *w, const char *s, size_t n)
{
    size_t cap;
    char *base;

    if (w->failed) {
        return;
    }
    if (w->cap - w->len <= n) { /* keep room for the final NUL */
        cap = w->cap == 0 ? 4096 : w->cap;
        while (cap - w->len <= n) {
            cap *= 2;
        }
        base = realloc(w->base, cap);
        if (base == NULL) {
            w->failed = true;
            return;
        }
        w->base = base;
        w->cap = cap;
    }
    memcpy(w->base + w->len, s, n);
    w->len += n;
    w->base[w->len] = '\0';
}

static void
wb_puts(struct wbuf *w, const char *s)
{
    wb_put(w, s, strlen(s));
}

/* A label value or HELP text: backslash and newline escaped, and for label values also the
 * double quote (exposition format 0.0.4). */
static void
wb_escaped(struct wbuf *w, const char *s, bool is_label)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;

        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (*s == '"' && is_label) {
            esc = "\\\"";
        }
        if (esc != NULL) {
            wb_put(w, run, (size_t)(s - run));
            wb_puts(w, esc);
            run = s + 1;
        }
    }
    wb_put(w, run, (size_t)(s - run));
}

/* <value> / 10^<digits> in decimal into <text>, trailing zeros of the fraction dropped:
 * exact, with no floating point ("0.0005", "2.5", "1795345200.123", "0"). */
static const char *
fixed_text(char text[48], uint64_t value, unsigned digits)
{
    uint64_t scale = 1;
    unsigned i;
    int n;

    for (i = 0; i < digits; i++) {
        scale *= 10;
    }
    n = snprintf(text, 48, "%llu.%0*llu", (unsigned long long)(value / scale), (int)digits,
                 (unsigned long long)(value % scale));
    if (n <= 0 || n >= 48) {
        return "NaN";
    }
    while (digits > 0 && text[n - 1] == '0') {
        n--;
        digits--;
    }
    if (text[n - 1] == '.') {
        n--;
    }
    text[n] = '\0';
    return text;
}

struct label {
    const char *key;
    const char *value;
};

static void
family(struct wbuf *w, const char *name, const char *type, const char *help)
{
    wb_puts(w, "# HELP ");
    wb_puts(w, name);
    wb_puts(w, " ");
    wb_escaped(w, help, false);
    wb_puts(w, "\n# TYPE ");
    wb_puts(w, name);
    wb_puts(w, " ");
    wb_puts(w, type);
    wb_puts(w, "\n");
}

/* One line: "NAME<suffix>{k="v",...} VALUE". */
static void
sample_text(struct wbuf *w, const char *name, const char *suffix, const struct label *labels,
            size_t n_labels, const char *value)
{
    size_t i;

    wb_puts(w, name);
    wb_puts(w, suffix);
    if (n_labels > 0) {
        wb_puts(w, "{");
        for (i = 0; i < n_labels; i++) {
            wb_puts(w, i > 0 ? "," : "");
            wb_puts(w, labels[i].key);
            wb_puts(w, "=\"");
            wb_escaped(w, labels[i].value, true);
            wb_puts(w, "\"");
        }
        wb_puts(w, "}");
    }
    wb_puts(w, " ");
    wb_puts(w, value);
    wb_puts(w, "\n");
}

static void
sample(struct wbuf *w, const char *name, const char *suffix, const struct label *labels,
       size_t n_labels, uint64_t value)
{
    char text[24];

    snprintf(text, sizeof(text), "%llu", (unsigned long long)value);
    sample_text(w, name, suffix, labels, n_labels, text);
}

/* --- The snapshot: every worker summed ------------------------------------------------ */

struct snapshot {
    size_t n_listeners; /* rows, "_other" last */
    size_t n_upstreams;
    uint64_t *listener; /* [n_listeners][SR__ML_N] */
    uint64_t *active;   /* [n_listeners] */
    uint64_t *qactive;  /* [n_listeners]: QUIC flows */
    uint64_t *upstream; /* [n_upstreams][SR__MU_N] */
    uint64_t hello[SR_METRICS_N_HELLO][SR_METRICS_N_HELLO_REASONS + 1];
    uint64_t hello_ech;
    uint64_t quic_initial[SR_METRICS_N_QUIC_STATUS][SR_METRICS_N_QUIC_REASONS + 1];
    uint64_t denied[SR_METRICS_RULES_MAX + 1];
};

static uint64_t
load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Rows that no name claims (an id the daemon did not intern) are added to "_other", so that
 * no two series can share a label set. */
static size_t
target_row(size_t row, size_t n_rows, const struct sr_metrics_names *names)
{
    size_t n_named = names != NULL ? names->n : 0;

    return row < n_named ? row : n_rows - 1;
}

static void
snapshot_add(struct snapshot *s, const struct sr_metrics *m, const struct sr_metrics_info *info)
{
    size_t row, to, k, h;
    uint64_t closed, accepted;

    for (row = 0; row < m->n_listeners; row++) {
        const _Atomic uint64_t *src = &m->listener[row * SR__ML_N];

        to = target_row(row, s->n_listeners, info->listeners);
        /* Closed first, then accepted: a connection is counted as accepted before it can be
         * counted as closed, so this order keeps a scrape from seeing more closed than
         * accepted on the usual memory models; the clamp covers the others. */
        closed = 0;
        for (k = 0; k < SR_METRICS_N_OUTCOMES; k++) {
            closed += load(&src[SR__ML_CLOSED + k]);
        }
        accepted = load(&src[SR__ML_ACCEPTED]) + load(&src[SR__ML_ADOPTED]);
        s->active[to] += accepted > closed ? accepted - closed : 0;
        closed = 0;
        for (k = 0; k < SR_METRICS_N_OUTCOMES; k++) {
            closed += load(&src[SR__ML_QCLOSED + k]);
        }
        accepted = load(&src[SR__ML_QFLOWS]);
        s->qactive[to] += accepted > closed ? accepted - closed : 0;
        for (k = 0; k < SR__ML_N; k++) {
            s->listener[to * SR__ML_N + k] += load(&src[k]);
        }
    }
    for (row = 0; row < m->n_upstreams; row++) {
        to = target_row(row, s->n_upstreams, info->upstreams);
        for (k = 0; k < SR__MU_N; k++) {
            s->upstream[to * SR__MU_N + k] += load(&m->upstream[row * SR__MU_N + k]);
        }
    }
    for (h = 0; h < SR_METRICS_N_HELLO; h++) {
        for (k = 0; k <= SR_METRICS_N_HELLO_REASONS; k++) {
            s->hello[h][k] += load(&m->hello[h][k]);
        }
    }
    s->hello_ech += load(&m->hello_ech);
    for (k = 0; k <= SR_METRICS_RULES_MAX; k++) {
        s->denied[target_row(k, SR_METRICS_RULES_MAX + 1, info->rules)] += load(&m->denied[k]);
    }
    for (h = 0; h < SR_METRICS_N_QUIC_STATUS; h++) {
        for (k = 0; k <= SR_METRICS_N_QUIC_REASONS; k++) {
            s->quic_initial[h][k] += load(&m->quic_initial[h][k]);
        }
    }
}

static bool
row_is_zero(const uint64_t *row, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (row[i] != 0) {
            return false;
        }
    }
    return true;
}

/* The label value of listener or upstream row <row>, or NULL when the row is not shown:
 * named rows always (listeners) or once anything was counted (upstreams, <is_sparse>);
 * "_other" only when not zero. */
static const char *
row_name(size_t row, size_t n_rows, const struct sr_metrics_names *names, const uint64_t *values,
         size_t n_values, bool is_sparse)
{
    size_t n_named = names != NULL ? names->n : 0;

    if (row == n_rows - 1) {
        return row_is_zero(values, n_values) ? NULL : SR_METRICS_OTHER;
    }
    if (row >= n_named || (is_sparse && row_is_zero(values, n_values))) {
        return NULL;
    }
    return names->names[row];
}

static void
format_process(struct wbuf *w, const struct sr_metrics_info *info)
{
    char text[48];
    struct label l;

    family(w, "sniroute_build_info", "gauge", "Always 1; the version of the running daemon.");
    l.key = "version";
    l.value = info->version != NULL ? info->version : "";
    sample(w, "sniroute_build_info", "", &l, 1, 1);

    family(w, "sniroute_process_start_time_seconds", "gauge",
           "When the process started, in seconds since the Unix epoch.");
    sample_text(w, "sniroute_process_start_time_seconds", "", NULL, 0,
                fixed_text(text, info->start_time_ms, 3));

    family(w, "sniroute_config_generation", "gauge",
           "Config in use: 1 at start, plus 1 per successful reload.");
    sample(w, "sniroute_config_generation", "", NULL, 0, info->config_generation);

    family(w, "sniroute_config_reloads_total", "counter",
           "Config reloads by result; a failed one keeps the config in use.");
    l.key = "result";
    l.value = "ok";
    sample(w, "sniroute_config_reloads_total", "", &l, 1, info->reloads_ok);
    l.value = "failed";
    sample(w, "sniroute_config_reloads_total", "", &l, 1, info->reloads_failed);

    family(w, "sniroute_process_lock_acquisitions_total", "counter",
           "Acquisitions of locks every worker may take (the workers' mailbox on reload and "
           "drain, the sockets of an upgrade); none per connection.");
    sample(w, "sniroute_process_lock_acquisitions_total", "", NULL, 0, info->process_locks);

    family(w, "sniroute_shard_lock_acquisitions_total", "counter",
           "Acquisitions of the per-address table shards' locks (one of 64 per address, for "
           "max_connections_per_ip and max_quic_flows_per_ip): about two per connection; "
           "one more with max_new_connections_per_ip.");
    sample(w, "sniroute_shard_lock_acquisitions_total", "", NULL, 0, info->shard_locks);

    family(w, "sniroute_rate_limit_entries", "gauge",
           "Token buckets of max_new_connections_per_ip kept now (one per client address or "
           "IPv6 /64 and listener), at most rate_limit_entries.");
    sample(w, "sniroute_rate_limit_entries", "", NULL, 0, info->rate_entries);

    family(w, "sniroute_rate_limit_evictions_total", "counter",
           "Token buckets dropped to make room for another address (least recently seen "
           "first); a dropped address starts again with a full bucket.");
    sample(w, "sniroute_rate_limit_evictions_total", "", NULL, 0, info->rate_evictions);

    if (info->relay_path != NULL) {
        bool is_sockmap = strcmp(info->relay_path, "sockmap") == 0;

        family(w, "sniroute_relay_path", "gauge",
               "1 for the path established TCP connections relay by (kernel_relay): sockmap "
               "(in the kernel, BPF) or splice (in the workers).");
        l.key = "path";
        l.value = "sockmap";
        sample(w, "sniroute_relay_path", "", &l, 1, is_sockmap ? 1 : 0);
        l.value = "splice";
        sample(w, "sniroute_relay_path", "", &l, 1, is_sockmap ? 0 : 1);
        family(w, "sniroute_kernel_relayed_total", "counter",
               "TCP connections handed to the kernel path (sockmap) since start.");
        sample(w, "sniroute_kernel_relayed_total", "", NULL, 0, info->n_kernel_relayed);
        family(w, "sniroute_kernel_relay_pauses_total", "counter",
               "Kernel-relayed sockets paused because more than 4 MiB of their bytes waited "
               "for a slow reader (backpressure: the bytes wait in the socket, the sender is "
               "held back) since start.");
        sample(w, "sniroute_kernel_relay_pauses_total", "", NULL, 0, info->n_kernel_paused);
        family(w, "sniroute_kernel_relay_splits_total", "counter",
               "Kernel-relayed connections whose client direction went back to the workers "
               "(its socket paused for a slow backend) while the backend's stayed in the "
               "kernel, since start.");
        sample(w, "sniroute_kernel_relay_splits_total", "", NULL, 0, info->n_kernel_split);
    }
}

/* One family over listener rows. <column> is the first counter of the row; with <names> the
 * family has a second label <key2> over <n> columns named by <names>. <active> replaces the
 * row's counters (the gauge). */
static void
format_by_listener(struct wbuf *w, const struct snapshot *s, const struct sr_metrics_info *info,
                   const char *name, const char *type, const char *help, size_t column,
                   const char *key2, const char *const *names, size_t n)
{
    struct label l[2];
    size_t row, k;

    family(w, name, type, help);
    l[0].key = "listener";
    l[1].key = key2;
    for (row = 0; row < s->n_listeners; row++) {
        const uint64_t *values = &s->listener[row * SR__ML_N];

        l[0].value = row_name(row, s->n_listeners, info->listeners, values, SR__ML_N, false);
        if (l[0].value == NULL) {
            continue;
        }
        if (column == SIZE_MAX) {
            sample(w, name, "", l, 1, s->active[row]);
        } else if (column == SIZE_MAX - 1) {
            sample(w, name, "", l, 1, s->qactive[row]);
        } else if (key2 == NULL) {
            sample(w, name, "", l, 1, values[column]);
        } else {
            for (k = 0; k < n; k++) {
                l[1].value = names[k];
                sample(w, name, "", l, 2, values[column + k]);
            }
        }
    }
}

static void
format_listeners(struct wbuf *w, const struct snapshot *s, const struct sr_metrics_info *info)
{
    format_by_listener(w, s, info, "sniroute_connections_accepted_total", "counter",
                       "Connections accepted, by listener.", SR__ML_ACCEPTED, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_connections_adopted_total", "counter",
                       "Open connections taken over from the old process of a binary upgrade, "
                       "by listener.",
                       SR__ML_ADOPTED, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_connections_active", "gauge",
                       "Connections open now, by listener.", SIZE_MAX, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_connections_closed_total", "counter",
                       "Connections closed, by listener and outcome (as in the access log; "
                       "handed_over: to the new process of a binary upgrade).",
                       SR__ML_CLOSED, "outcome", sr__metrics_outcome_names, SR_METRICS_N_OUTCOMES);
    format_by_listener(w, s, info, "sniroute_connections_rejected_total", "counter",
                       "Connections closed at once by a limit, by listener and limit; not "
                       "counted as accepted.",
                       SR__ML_LIMIT, "limit", limit_names, SR_METRICS_N_LIMITS);
    format_by_listener(w, s, info, "sniroute_route_lookups_total", "counter",
                       "Route decisions, by listener and kind of match.", SR__ML_ROUTE, "kind",
                       route_names, SR_METRICS_N_ROUTE_KINDS);
    format_by_listener(w, s, info, "sniroute_bytes_in_total", "counter",
                       "Bytes received from clients (the hello included), by listener.",
                       SR__ML_BYTES_IN, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_bytes_out_total", "counter",
                       "Bytes sent to clients (alerts included), by listener.", SR__ML_BYTES_OUT,
                       NULL, NULL, 0);
}

/* Is (<h>, <r>) a pair the parser can report? Those are always shown; any other only when
 * something was counted under it. */
static bool
hello_pair_is_expected(size_t h, size_t r)
{
    bool is_not_tls_reason =
        r == SR_HELLO_REASON_NOT_HANDSHAKE || r == SR_HELLO_REASON_NOT_TLS_VERSION;

    switch (h) {
    case SR_METRICS_HELLO_NOT_TLS:
        return is_not_tls_reason;
    case SR_METRICS_HELLO_MALFORMED:
        return r != SR_HELLO_REASON_NONE && r < SR_METRICS_N_HELLO_REASONS && !is_not_tls_reason;
    default:
        return r == SR_HELLO_REASON_NONE;
    }
}

/* sniroute_hello_misses_total: connections that never reached an upstream because of their
 * first bytes, one series per reason `sniroute selftest` can meet. Derived from counters kept
 * anyway, so the hot path gains nothing: each reason takes the source that counts exactly
 * the connections that reason ended. Hello results where every such result is a refusal;
 * connection outcomes, summed over listeners, where the hello result alone overcounts (a
 * hello without SNI may still be routed by default, a non-TLS one sent to fallback). */
enum miss_source {
    MISS_HELLO,   /* s->hello[<index>], every reason summed */
    MISS_OUTCOME, /* s->listener[*][SR__ML_CLOSED + <index>], every listener summed */
};

static const struct {
    const char *reason;
    enum miss_source source;
    size_t index;
} miss_reasons[] = {
    {"no_sni", MISS_OUTCOME, SR_METRICS_OUTCOME_NO_SNI}, /* no_sni = reject */
    {"incomplete", MISS_HELLO, SR_METRICS_HELLO_INCOMPLETE},
    {"too_large", MISS_HELLO, SR_METRICS_HELLO_TOO_LARGE},
    {"hello_timeout", MISS_HELLO, SR_METRICS_HELLO_TIMEOUT},
    {"not_tls", MISS_OUTCOME, SR_METRICS_OUTCOME_NOT_TLS}, /* without fallback */
    {"malformed", MISS_HELLO, SR_METRICS_HELLO_MALFORMED},
    {"no_route", MISS_OUTCOME, SR_METRICS_OUTCOME_NO_ROUTE},
};

static void
format_misses(struct wbuf *w, const struct snapshot *s)
{
    static const char name[] = "sniroute_hello_misses_total";
    struct label l;
    size_t i, k;

    family(w, name, "counter",
           "Connections that reached no upstream because of their ClientHello, by reason "
           "(incomplete, hello_timeout and no_route include HTTP listeners' request heads).");
    l.key = "reason";
    for (i = 0; i < sizeof(miss_reasons) / sizeof(miss_reasons[0]); i++) {
        uint64_t n = 0;

        if (miss_reasons[i].source == MISS_HELLO) {
            for (k = 0; k <= SR_METRICS_N_HELLO_REASONS; k++) {
                n += s->hello[miss_reasons[i].index][k];
            }
        } else {
            for (k = 0; k < s->n_listeners; k++) {
                n += s->listener[k * SR__ML_N + SR__ML_CLOSED + miss_reasons[i].index];
            }
        }
        l.value = miss_reasons[i].reason;
        sample(w, name, "", &l, 1, n);
    }
}

static void
format_hello(struct wbuf *w, const struct snapshot *s)
{
    static const char name[] = "sniroute_hello_results_total";
    struct label l[2];
    size_t h, r;

    family(w, name, "counter",
           "How reading the ClientHello ended, by result and the parser's reason.");
    l[0].key = "result";
    l[1].key = "reason";
    for (h = 0; h < SR_METRICS_N_HELLO; h++) {
        for (r = 0; r <= SR_METRICS_N_HELLO_REASONS; r++) {
            if (!hello_pair_is_expected(h, r) && s->hello[h][r] == 0) {
                continue;
            }
            l[0].value = sr__metrics_hello_names[h];
            l[1].value = sr_metrics_hello_reason_name((enum sr_hello_reason)r);
            sample(w, name, "", l, 2, s->hello[h][r]);
        }
    }
    format_misses(w, s);
    family(w, "sniroute_hello_ech_total", "counter",
           "Complete ClientHellos that carried Encrypted Client Hello (routed by the outer "
           "name).");
    sample(w, "sniroute_hello_ech_total", "", NULL, 0, s->hello_ech);
}

/* Is (<st>, <r>) a pair the Initial reader can report? Those are always shown. */
static bool
quic_pair_is_expected(size_t st, size_t r)
{
    switch (st) {
    case SR_QUIC_NOT_QUIC:
        return r == SR_QUIC_REASON_SHORT_HEADER || r == SR_QUIC_REASON_TRUNCATED ||
               r == SR_QUIC_REASON_VERSION;
    case SR_QUIC_MALFORMED:
        return r >= SR_QUIC_REASON_SMALL_DATAGRAM && r <= SR_QUIC_REASON_HELLO;
    case SR_QUIC_ERROR:
        return r == SR_QUIC_REASON_LIBCRYPTO;
    default:
        return r == SR_QUIC_REASON_NONE;
    }
}

static void
format_quic(struct wbuf *w, const struct snapshot *s, const struct sr_metrics_info *info)
{
    static const char closed[] = "sniroute_quic_flows_closed_total";
    static const char initial[] = "sniroute_quic_initial_results_total";
    const char *outcomes[sizeof(quic_outcomes) / sizeof(quic_outcomes[0])];
    struct label l[2];
    size_t row, k, st, r;

    format_by_listener(w, s, info, "sniroute_quic_flows_started_total", "counter",
                       "QUIC flows started (a client address and port whose first datagram "
                       "began a valid Initial), by listener.",
                       SR__ML_QFLOWS, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_quic_flows_active", "gauge",
                       "QUIC flows open now (refused ones excluded), by listener.", SIZE_MAX - 1,
                       NULL, NULL, 0);
    /* Only the outcomes a flow can have: a column per outcome is kept for all of them. */
    family(w, closed, "counter",
           "QUIC flows ended, by listener and outcome (as in the access log).");
    l[0].key = "listener";
    l[1].key = "outcome";
    for (k = 0; k < sizeof(quic_outcomes) / sizeof(quic_outcomes[0]); k++) {
        outcomes[k] = sr__metrics_outcome_names[quic_outcomes[k]];
    }
    for (row = 0; row < s->n_listeners; row++) {
        const uint64_t *values = &s->listener[row * SR__ML_N];

        l[0].value = row_name(row, s->n_listeners, info->listeners, values, SR__ML_N, false);
        if (l[0].value == NULL) {
            continue;
        }
        for (k = 0; k < sizeof(quic_outcomes) / sizeof(quic_outcomes[0]); k++) {
            l[1].value = outcomes[k];
            sample(w, closed, "", l, 2, values[SR__ML_QCLOSED + quic_outcomes[k]]);
        }
    }
    format_by_listener(w, s, info, "sniroute_quic_datagrams_in_total", "counter",
                       "Datagrams from QUIC clients relayed to upstreams, by listener.",
                       SR__ML_QDGRAMS_IN, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_quic_datagrams_out_total", "counter",
                       "Datagrams from upstreams relayed to QUIC clients, by listener.",
                       SR__ML_QDGRAMS_OUT, NULL, NULL, 0);
    format_by_listener(w, s, info, "sniroute_quic_datagrams_dropped_total", "counter",
                       "Datagrams from QUIC clients not relayed, by listener and reason.",
                       SR__ML_QDROPPED, "reason", sr__metrics_quic_drop_names,
                       SR_METRICS_N_QUIC_DROPS);

    family(w, initial, "counter",
           "What the QUIC Initial reader said of each datagram it read, by result and reason.");
    l[0].key = "result";
    l[1].key = "reason";
    for (st = 0; st < SR_METRICS_N_QUIC_STATUS; st++) {
        for (r = 0; r <= SR_METRICS_N_QUIC_REASONS; r++) {
            if (!quic_pair_is_expected(st, r) && s->quic_initial[st][r] == 0) {
                continue;
            }
            l[0].value = quic_status_names[st];
            l[1].value = sr_metrics_quic_reason_name((enum sr_quic_reason)r);
            sample(w, initial, "", l, 2, s->quic_initial[st][r]);
        }
    }
}

static void
format_upstreams(struct wbuf *w, const struct snapshot *s, const struct sr_metrics_info *info)
{
    /* Columns SR__MU_CONNECTIONS, SR__MU_BYTES_IN and SR__MU_BYTES_OUT, in that order. */
    static const char *const counters[][2] = {
        {"sniroute_upstream_connections_total",
         "Connections (and QUIC flows) routed to an upstream."},
        {"sniroute_upstream_bytes_in_total",
         "Bytes received from clients of connections routed to an upstream."},
        {"sniroute_upstream_bytes_out_total",
         "Bytes sent to clients of connections routed to an upstream."},
    };
    static const char hist[] = "sniroute_upstream_connect_duration_seconds";
    static const char fail[] = "sniroute_upstream_connect_failures_total";
    char le[48], sum[48];
    struct label l[2];
    size_t row, k, i;
    const uint64_t *v;
    uint64_t cum;

    l[0].key = "upstream";
    for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        family(w, counters[i][0], "counter", counters[i][1]);
        for (row = 0; row < s->n_upstreams; row++) {
            v = &s->upstream[row * SR__MU_N];
            l[0].value = row_name(row, s->n_upstreams, info->upstreams, v, SR__MU_N, true);
            if (l[0].value != NULL) {
                sample(w, counters[i][0], "", l, 1, v[SR__MU_CONNECTIONS + i]);
            }
        }
    }

    family(w, fail, "counter", "Failed connect attempts to an upstream, by error class.");
    l[1].key = "error";
    for (row = 0; row < s->n_upstreams; row++) {
        v = &s->upstream[row * SR__MU_N];
        l[0].value = row_name(row, s->n_upstreams, info->upstreams, v, SR__MU_N, true);
        if (l[0].value == NULL) {
            continue;
        }
        for (k = 0; k < SR_METRICS_N_CONNECT_ERRORS; k++) {
            l[1].value = connect_error_names[k];
            sample(w, fail, "", l, 2, v[SR__MU_FAILURES + k]);
        }
    }

    /* Buckets are stored one per observation; the exposition wants them cumulative. */
    family(w, hist, "histogram", "Time to connect to an upstream, successful attempts only.");
    l[1].key = "le";
    for (row = 0; row < s->n_upstreams; row++) {
        v = &s->upstream[row * SR__MU_N];
        l[0].value = row_name(row, s->n_upstreams, info->upstreams, v, SR__MU_N, true);
        if (l[0].value == NULL) {
            continue;
        }
        cum = 0;
        for (k = 0; k < SR_METRICS_N_LATENCY_BUCKETS; k++) {
            cum += v[SR__MU_LATENCY_BUCKET + k];
            l[1].value = k + 1 < SR_METRICS_N_LATENCY_BUCKETS
                             ? fixed_text(le, latency_bounds_us[k], 6)
                             : "+Inf";
            sample(w, hist, "_bucket", l, 2, cum);
        }
        sample_text(w, hist, "_sum", l, 1, fixed_text(sum, v[SR__MU_LATENCY_SUM_US], 6));
        sample(w, hist, "_count", l, 1, cum);
    }
}

/* Refusals by access rule: every rule label the daemon has seen (a deny that never
 * matched shows 0, so a dashboard can tell "no hits" from "no such rule"). */
static void
format_denied(struct wbuf *w, const struct snapshot *s, const struct sr_metrics_info *info)
{
    static const char name[] = "sniroute_denied_total";
    size_t n_named = info->rules != NULL ? info->rules->n : 0;
    struct label l;
    size_t row;

    family(w, name, "counter",
           "Connections, HTTP requests and QUIC flows refused by an allow or deny rule, by rule "
           "(SECTION:NAME:deny:RANGE, or SECTION:NAME:not_allowed when no allow line matched).");
    l.key = "rule";
    for (row = 0; row < n_named && row < SR_METRICS_RULES_MAX; row++) {
        l.value = info->rules->names[row];
        sample(w, name, "", &l, 1, s->denied[row]);
    }
    if (s->denied[SR_METRICS_RULES_MAX] != 0) {
        l.value = SR_METRICS_OTHER;
        sample(w, name, "", &l, 1, s->denied[SR_METRICS_RULES_MAX]);
    }
}

int
sr_metrics_format(char **out, size_t *len, const struct sr_metrics *const *workers,
                  size_t n_workers, const struct sr_metrics_info *info)
{
    struct snapshot s;
    struct wbuf w;
    size_t i;
    int rc = -ENOMEM;

    *out = NULL;
    *len = 0;
    memset(&s, 0, sizeof(s));
    memset(&w, 0, sizeof(w));
    s.n_listeners = n_workers > 0 ? workers[0]->n_listeners : 1;
    s.n_upstreams = n_workers > 0 ? workers[0]->n_upstreams : 1;
    for (i = 0; i < n_workers; i++) {
        if (workers[i]->n_listeners != s.n_listeners || workers[i]->n_upstreams != s.n_upstreams) {
            return -EINVAL;
        }
    }
    s.listener = calloc(s.n_listeners * SR__ML_N, sizeof(uint64_t));
    s.active = calloc(s.n_listeners, sizeof(uint64_t));
    s.qactive = calloc(s.n_listeners, sizeof(uint64_t));
    s.upstream = calloc(s.n_upstreams * SR__MU_N, sizeof(uint64_t));
    if (s.listener == NULL || s.active == NULL || s.qactive == NULL || s.upstream == NULL) {
        goto done;
    }
    for (i = 0; i < n_workers; i++) {
        snapshot_add(&s, workers[i], info);
    }

    format_process(&w, info);
    format_listeners(&w, &s, info);
    format_hello(&w, &s);
    format_quic(&w, &s, info);
    format_upstreams(&w, &s, info);
    format_denied(&w, &s, info);
    if (w.failed) {
        free(w.base);
        goto done;
    }
    *out = w.base;
    *len = w.len;
    rc = 0;

done:
    free(s.upstream);
    free(s.qactive);
    free(s.active);
    free(s.listener);
    return rc;
}
