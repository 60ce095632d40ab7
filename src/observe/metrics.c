/* SPDX-License-Identifier: MIT */
/* The metrics registry (metrics.h): one worker's rows of counters set up and freed, the
 * append-only tables that give listener and upstream names their ids, and the words for
 * every other id (label values, the access log's outcomes, connect errors by errno). The
 * counting itself is inline in the header; the text a scrape gets is metrics_text.c's. */
#include "sniroute/observe/metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const sr__metrics_outcome_names[SR_METRICS_N_OUTCOMES] = {
    [SR_METRICS_OUTCOME_OK] = "ok",
    [SR_METRICS_OUTCOME_NO_ROUTE] = "no_route",
    [SR_METRICS_OUTCOME_NO_SNI] = "no_sni",
    [SR_METRICS_OUTCOME_NOT_TLS] = "not_tls",
    [SR_METRICS_OUTCOME_MALFORMED] = "malformed",
    [SR_METRICS_OUTCOME_TOO_LARGE] = "too_large",
    [SR_METRICS_OUTCOME_INCOMPLETE] = "incomplete",
    [SR_METRICS_OUTCOME_HELLO_TIMEOUT] = "hello_timeout",
    [SR_METRICS_OUTCOME_RESOLVE_FAILED] = "resolve_failed",
    [SR_METRICS_OUTCOME_CONNECT_FAILED] = "connect_failed",
    [SR_METRICS_OUTCOME_CONNECT_TIMEOUT] = "connect_timeout",
    [SR_METRICS_OUTCOME_IDLE_TIMEOUT] = "idle_timeout",
    [SR_METRICS_OUTCOME_CLIENT_RESET] = "client_reset",
    [SR_METRICS_OUTCOME_BACKEND_RESET] = "backend_reset",
    [SR_METRICS_OUTCOME_UNTRUSTED_PROXY] = "untrusted_proxy",
    [SR_METRICS_OUTCOME_PROXY_INVALID] = "proxy_invalid",
    [SR_METRICS_OUTCOME_NOT_HTTP] = "not_http",
    [SR_METRICS_OUTCOME_HOST_CHANGED] = "host_changed",
    [SR_METRICS_OUTCOME_OVER_IP_LIMIT] = "max_connections_per_ip",
    [SR_METRICS_OUTCOME_OVER_RATE] = "max_new_connections_per_ip",
    [SR_METRICS_OUTCOME_DENIED] = "denied",
    [SR_METRICS_OUTCOME_DRAINED] = "drained",
    [SR_METRICS_OUTCOME_HANDED_OVER] = "handed_over",
    [SR_METRICS_OUTCOME_ERROR] = "error",
};

const char *const sr__metrics_hello_names[SR_METRICS_N_HELLO] = {
    [SR_METRICS_HELLO_FOUND] = "found",           [SR_METRICS_HELLO_NO_SNI] = "no_sni",
    [SR_METRICS_HELLO_NOT_TLS] = "not_tls",       [SR_METRICS_HELLO_MALFORMED] = "malformed",
    [SR_METRICS_HELLO_TOO_LARGE] = "too_large",   [SR_METRICS_HELLO_INCOMPLETE] = "incomplete",
    [SR_METRICS_HELLO_TIMEOUT] = "hello_timeout", [SR_METRICS_HELLO_CLIENT_RESET] = "client_reset",
    [SR_METRICS_HELLO_ERROR] = "error",
};

/* Label values for the parser's reasons: identifiers, unlike sr_hello_reason_str()'s phrases,
 * so that a PromQL matcher needs no quoting of spaces. */
static const char *const reason_names[SR_METRICS_N_HELLO_REASONS] = {
    [SR_HELLO_REASON_NONE] = "none",
    [SR_HELLO_REASON_NOT_HANDSHAKE] = "not_handshake",
    [SR_HELLO_REASON_NOT_TLS_VERSION] = "not_tls_version",
    [SR_HELLO_REASON_RECORD_EMPTY] = "record_empty",
    [SR_HELLO_REASON_RECORD_TOO_LONG] = "record_too_long",
    [SR_HELLO_REASON_RECORD_TYPE] = "record_type",
    [SR_HELLO_REASON_RECORD_TRAILING] = "record_trailing",
    [SR_HELLO_REASON_HANDSHAKE_TYPE] = "handshake_type",
    [SR_HELLO_REASON_HANDSHAKE_TOO_LONG] = "handshake_too_long",
    [SR_HELLO_REASON_OVERRUN] = "overrun",
    [SR_HELLO_REASON_BLOCK_END] = "block_end",
    [SR_HELLO_REASON_VERSION] = "version",
    [SR_HELLO_REASON_SESSION_ID] = "session_id",
    [SR_HELLO_REASON_CIPHER_SUITES] = "cipher_suites",
    [SR_HELLO_REASON_COMPRESSION] = "compression",
    [SR_HELLO_REASON_DUPLICATE_EXTENSION] = "duplicate_extension",
    [SR_HELLO_REASON_TOO_MANY_EXTENSIONS] = "too_many_extensions",
    [SR_HELLO_REASON_SNI_LIST] = "sni_list",
    [SR_HELLO_REASON_SNI_TYPE] = "sni_type",
    [SR_HELLO_REASON_SNI_MULTIPLE] = "sni_multiple",
    [SR_HELLO_REASON_SNI_NAME] = "sni_name",
    [SR_HELLO_REASON_ALPN] = "alpn",
    [SR_HELLO_REASON_SUPPORTED_VERSIONS] = "supported_versions",
};

/* Identifiers for the Initial reader's reasons (sr_quic_reason_str() has phrases). */
static const char *const quic_reason_names[SR_METRICS_N_QUIC_REASONS] = {
    [SR_QUIC_REASON_NONE] = "none",
    [SR_QUIC_REASON_SHORT_HEADER] = "short_header",
    [SR_QUIC_REASON_TRUNCATED] = "truncated",
    [SR_QUIC_REASON_VERSION] = "version",
    [SR_QUIC_REASON_SMALL_DATAGRAM] = "small_datagram",
    [SR_QUIC_REASON_LARGE_DATAGRAM] = "large_datagram",
    [SR_QUIC_REASON_VERSION_NEGOTIATION] = "version_negotiation",
    [SR_QUIC_REASON_RETRY] = "retry",
    [SR_QUIC_REASON_HEADER] = "header",
    [SR_QUIC_REASON_CID_LENGTH] = "cid_length",
    [SR_QUIC_REASON_DCID_SHORT] = "dcid_short",
    [SR_QUIC_REASON_PACKET_LENGTH] = "packet_length",
    [SR_QUIC_REASON_PACKET_SHORT] = "packet_short",
    [SR_QUIC_REASON_DECRYPT] = "decrypt",
    [SR_QUIC_REASON_RESERVED_BITS] = "reserved_bits",
    [SR_QUIC_REASON_FRAME_TYPE] = "frame_type",
    [SR_QUIC_REASON_FRAME] = "frame",
    [SR_QUIC_REASON_CRYPTO_CHANGED] = "crypto_changed",
    [SR_QUIC_REASON_CRYPTO_PAST_HELLO] = "crypto_past_hello",
    [SR_QUIC_REASON_TOO_LARGE] = "too_large",
    [SR_QUIC_REASON_HELLO] = "hello",
    [SR_QUIC_REASON_LIBCRYPTO] = "libcrypto",
};

const char *const sr__metrics_quic_drop_names[SR_METRICS_N_QUIC_DROPS] = {
    [SR_METRICS_QDROP_NOT_QUIC] = "not_quic",
    [SR_METRICS_QDROP_MALFORMED] = "malformed",
    [SR_METRICS_QDROP_REFUSED] = "refused",
    [SR_METRICS_QDROP_MAX_FLOWS] = "max_quic_flows",
    [SR_METRICS_QDROP_MAX_FLOWS_PER_IP] = "max_quic_flows_per_ip",
    [SR_METRICS_QDROP_DESCRIPTORS] = "descriptors",
    [SR_METRICS_QDROP_HOLD] = "hold_full",
    [SR_METRICS_QDROP_DRAINING] = "draining",
    [SR_METRICS_QDROP_SEND_FAILED] = "send_failed",
    [SR_METRICS_QDROP_RATE] = "max_new_connections_per_ip",
};

const char *
sr_metrics_outcome_name(enum sr_metrics_outcome o)
{
    return (unsigned)o < SR_METRICS_N_OUTCOMES ? sr__metrics_outcome_names[o] : "error";
}

const char *
sr_metrics_hello_name(enum sr_metrics_hello h)
{
    return (unsigned)h < SR_METRICS_N_HELLO ? sr__metrics_hello_names[h] : "error";
}

const char *
sr_metrics_hello_reason_name(enum sr_hello_reason r)
{
    return (unsigned)r < SR_METRICS_N_HELLO_REASONS ? reason_names[r] : "other";
}

const char *
sr_metrics_quic_reason_name(enum sr_quic_reason r)
{
    return (unsigned)r < SR_METRICS_N_QUIC_REASONS ? quic_reason_names[r] : "other";
}

const char *
sr_metrics_quic_drop_name(enum sr_metrics_quic_drop d)
{
    return (unsigned)d < SR_METRICS_N_QUIC_DROPS ? sr__metrics_quic_drop_names[d] : "other";
}

enum sr_metrics_outcome
sr_metrics_outcome_parse(const char *outcome)
{
    size_t i;

    if (outcome == NULL) {
        return SR_METRICS_OUTCOME_ERROR;
    }
    for (i = 0; i < SR_METRICS_N_OUTCOMES; i++) {
        if (strcmp(outcome, sr__metrics_outcome_names[i]) == 0) {
            return (enum sr_metrics_outcome)i;
        }
    }
    return SR_METRICS_OUTCOME_ERROR;
}

enum sr_metrics_connect_error
sr_metrics_connect_error_from_errno(int err)
{
    switch (-err) {
    case ECONNREFUSED:
        return SR_METRICS_CONNECT_REFUSED;
    case ETIMEDOUT:
        return SR_METRICS_CONNECT_TIMEOUT;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EADDRNOTAVAIL:
        return SR_METRICS_CONNECT_UNREACHABLE;
    case ECONNRESET:
    case EPIPE:
        return SR_METRICS_CONNECT_RESET;
    default:
        return SR_METRICS_CONNECT_OTHER;
    }
}

int
sr_metrics_init(struct sr_metrics *m, size_t n_listener_ids, size_t n_upstream_ids)
{
    memset(m, 0, sizeof(*m));
    m->n_listeners = n_listener_ids + 1;
    m->n_upstreams = n_upstream_ids + 1;
    m->listener = calloc(m->n_listeners * SR__ML_N, sizeof(*m->listener));
    m->upstream = calloc(m->n_upstreams * SR__MU_N, sizeof(*m->upstream));
    if (m->listener == NULL || m->upstream == NULL) {
        sr_metrics_fini(m);
        return -ENOMEM;
    }
    return 0;
}

void
sr_metrics_fini(struct sr_metrics *m)
{
    free(m->listener);
    free(m->upstream);
    memset(m, 0, sizeof(*m));
}

int
sr_metrics_names_init(struct sr_metrics_names *names, size_t cap)
{
    memset(names, 0, sizeof(*names));
    names->names = calloc(cap > 0 ? cap : 1, sizeof(*names->names));
    if (names->names == NULL) {
        return -ENOMEM;
    }
    names->cap = cap;
    return 0;
}

uint32_t
sr_metrics_names_intern(struct sr_metrics_names *names, const char *name)
{
    size_t i;
    char *copy;

    for (i = 0; i < names->n; i++) {
        if (strcmp(names->names[i], name) == 0) {
            return (uint32_t)i;
        }
    }
    if (names->n >= names->cap || (copy = strdup(name)) == NULL) {
        return (uint32_t)names->cap;
    }
    names->names[names->n] = copy;
    return (uint32_t)names->n++;
}

void
sr_metrics_names_fini(struct sr_metrics_names *names)
{
    size_t i;

    for (i = 0; i < names->n; i++) {
        free(names->names[i]);
    }
    free(names->names);
    memset(names, 0, sizeof(*names));
}
