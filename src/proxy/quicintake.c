/* SPDX-License-Identifier: MIT */
/* An unrouted QUIC flow (quicintake.h): a client's first datagram checked, counted against
 * the limits and read; datagrams held and read again from the first until the ClientHello
 * is whole; the routing decision; the upstream's address, resolved if it is a name; then
 * the connect (quicrelay.c). Not here: which flow a datagram belongs to (quicflow.c), the
 * Initial reader itself (wire/quic.c), timeouts and the end (quiclife.c). */
#include "sniroute/proxy/quicintake.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "sniroute/config/decide.h"
#include "sniroute/config/pool.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/core/shared.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/quiclife.h"
#include "sniroute/proxy/quicrelay.h"
#include "sniroute/wire/quic.h"

/* A client whose first datagram is refused outright (malformed) is remembered, not served:
 * a refused flow from the start, with no log line (a flood of them would flood the log). */
static void
refused_new(struct sr_quic *q, struct sr_quic_sock *s, const struct sr_flowkey *key,
            const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct sr_quic_flow *f;

    if (q->n_refused >= SR_QUIC_REFUSED_MAX || q->is_draining) {
        return;
    }
    f = sr__quic_flow_new(q, s, key, peer, local);
    if (f == NULL) {
        return;
    }
    f->state = SR_QF_REFUSED;
    q->n_refused++;
    sr__quic_flow_deadline(f, f->last_in_ms + q->gen->cfg.hello_timeout_ms);
}

bool
sr__quic_flow_hold(struct sr_quic_flow *f, const uint8_t *d, size_t len)
{
    struct sr_quic_flow_setup *st = f->setup;
    uint8_t *grown;
    uint16_t len16 = (uint16_t)len;

    /* quic_hold_bytes counts the datagrams' bytes, not our 2-byte lengths. */
    if (st->n_held >= SR_QUIC_HOLD_DGRAMS_MAX ||
        st->held_len - 2 * (size_t)st->n_held + len > f->gen->cfg.quic_hold_bytes) {
        sr__quic_dropped(f->q, f->lid, SR_METRICS_QDROP_HOLD);
        f->detail = "over quic_hold_bytes before the ClientHello was complete";
        sr__quic_flow_end(f, "too_large");
        return false;
    }
    grown = realloc(st->held, st->held_len + 2 + len);
    if (grown == NULL) {
        f->detail = "out of memory";
        sr__quic_flow_end(f, "error");
        return false;
    }
    st->held = grown;
    memcpy(st->held + st->held_len, &len16, 2);
    memcpy(st->held + st->held_len + 2, d, len);
    st->held_len += 2 + len;
    st->n_held++;
    return true;
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs)
{
    struct sr_quic_flow *f = req->data;

    f->is_resolving = false;
    f->setup->addrs = addrs; /* freed with the setup */
    if (f->state != SR_QF_RESOLVING) {
        /* Ended meanwhile: it waited for this callback to be freed. */
        struct sr_quic *q = f->q;

        f->next_dead = q->dead;
        q->dead = f;
        sr__quic_reap_later(q);
        return;
    }
    if (status != 0 || addrs == NULL) {
        f->detail = uv_err_name(status != 0 ? status : UV_EAI_NONAME);
        if (f->uid != UINT32_MAX) {
            sr_metrics_connect_failed(f->q->host.metrics, f->uid, SR_METRICS_CONNECT_RESOLVE);
        }
        sr__quic_flow_end(f, "resolve_failed");
        return;
    }
    sr__quic_flow_connect(f, addrs, NULL, 0);
}

/* Route target <index> of the flow's generation: a HOST:PORT, or a server of its pool (no
 * retry on another: UDP has no connect to fail). <cur>: the datagram that completed the
 * ClientHello, not held. */
static void
flow_connect_upstream(struct sr_quic_flow *f, size_t index, const uint8_t *cur, size_t cur_len)
{
    struct sr_quic *q = f->q;
    const struct sr_config *cfg = &f->gen->cfg;
    struct sockaddr_storage ss;
    struct addrinfo ai;
    struct addrinfo hints;
    char port[8];
    int rc;

    f->upstream = &cfg->upstreams[index];
    f->uid = f->gen->upstream_ids[index];
    f->routed_ms = sr__quic_now_ms(q);
    sr_metrics_upstream_selected(q->host.metrics, f->uid);
    if (f->upstream->pool != 0) {
        const struct sr_pool_config *pc = &cfg->pools[f->upstream->pool - 1];
        size_t i;

        f->pool = &f->gen->pools[q->host.worker * cfg->n_pools + f->upstream->pool - 1];
        if (sr_pool_pick(f->pool, f->routed_ms, f->ipkey.bytes, 0, &i) == SR_POOL_NONE_LEFT) {
            f->detail = "no server available";
            sr__quic_flow_end(f, "connect_failed");
            return;
        }
        f->pool_index = i;
        f->target = &pc->servers[i];
        sr_pool_conn_start(f->pool, i);
        f->is_pool_counted = true;
    } else {
        f->target = &f->upstream->addr;
    }
    memset(&ss, 0, sizeof(ss));
    if (f->target->kind == SR_ADDR_NAME) {
        /* Resolved at each flow, as the TCP path does at each connect. */
        if (cur != NULL && !sr__quic_flow_hold(f, cur, cur_len)) {
            return;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        snprintf(port, sizeof(port), "%u", (unsigned)f->target->port);
        f->state = SR_QF_RESOLVING;
        f->setup->resolve_req.data = f;
        rc = uv_getaddrinfo(q->host.loop, &f->setup->resolve_req, on_resolved, f->target->host,
                            port, &hints);
        if (rc != 0) {
            f->detail = uv_err_name(rc);
            sr__quic_flow_end(f, "resolve_failed");
            return;
        }
        f->is_resolving = true;
        sr__quic_flow_deadline(f, f->routed_ms + cfg->connect_timeout_ms);
        return;
    }
    rc = f->target->kind == SR_ADDR_IPV6
             ? uv_ip6_addr(f->target->host, f->target->port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(f->target->host, f->target->port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        f->detail = uv_err_name(rc);
        sr__quic_flow_end(f, "connect_failed");
        return;
    }
    memset(&ai, 0, sizeof(ai));
    ai.ai_family = ss.ss_family;
    ai.ai_addr = (struct sockaddr *)&ss;
    ai.ai_addrlen =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    sr__quic_flow_connect(f, &ai, cur, cur_len);
}

/* The ClientHello is complete: decide, as every protocol does, and go there or refuse.
 * <res>'s views live until the next feed. */
static void
flow_route(struct sr_quic_flow *f, const struct sr_quic_result *res, const uint8_t *cur,
           size_t cur_len)
{
    struct sr_quic *q = f->q;
    struct sr_first_bytes said = {
        .said = res->status == SR_QUIC_FOUND ? SR_SAID_NAME : SR_SAID_NO_NAME,
        .name = res->hello.sni.ptr,
        .name_len = res->hello.sni.len,
        .alpn = res->hello.alpn.ptr,
        .alpn_len = res->hello.alpn.len,
        .has_ech = res->hello.has_ech,
        .from = &f->client.sa,
    };
    struct sr_decision d;

    sr__quic_unrouted_unlink(f);
    if (res->hello.has_ech) {
        f->has_ech = true;
        sr_metrics_hello_ech(q->host.metrics);
    }
    sr_decide(&f->gen->cfg, f->lcfg, &said, &d);
    if (d.name_len > 0) {
        f->sni = strdup(d.name); /* NULL when out of memory: the log shows "-" */
    }
    f->route = (uint8_t)d.hit.kind;
    if (d.refusal != SR_REFUSAL_NO_SNI && d.refusal != SR_REFUSAL_BAD_NAME) {
        sr_metrics_route(q->host.metrics, f->lid, d.hit.kind);
    }
    if (d.refusal == SR_REFUSAL_DENIED) {
        f->denied_by = d.denied_by; /* the upstream's rules refuse this client */
        sr_metrics_denied(q->host.metrics, d.denied_id);
    }
    if (d.verdict != SR_VERDICT_ROUTE) {
        /* Nothing is sent back: no alert, no datagram of ours to an unverified address. */
        sr__quic_dropped(q, f->lid, SR_METRICS_QDROP_REFUSED);
        sr__quic_flow_end(f, sr_refusal_outcome(d.refusal, false));
        return;
    }
    if (d.alpn != NULL) {
        f->alpn_route = d.alpn->proto;
    }
    flow_connect_upstream(f, d.target, cur, cur_len);
}

/* The metrics word of a refused datagram. */
static enum sr_metrics_quic_drop
drop_of(enum sr_quic_status status)
{
    return status == SR_QUIC_MALFORMED || status == SR_QUIC_ERROR ? SR_METRICS_QDROP_MALFORMED
                                                                  : SR_METRICS_QDROP_NOT_QUIC;
}

void
sr__quic_flow_hello_datagram(struct sr_quic_flow *f, const uint8_t *d, size_t len)
{
    struct sr_quic *q = f->q;
    struct sr_quic_flow_setup *st = f->setup;
    struct sr_quic_result res;
    size_t off = 0;

    sr_quic_initial_init(&q->initial, f->gen->cfg.max_hello_size);
    while (off < st->held_len) {
        uint16_t n;

        memcpy(&n, st->held + off, 2);
        sr_quic_feed(&q->crypto, &q->initial, st->held + off + 2, n, &res);
        off += 2 + (size_t)n;
    }
    sr_quic_feed(&q->crypto, &q->initial, d, len, &res);
    sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
    switch (res.status) {
    case SR_QUIC_NEED_MORE:
        (void)sr__quic_flow_hold(f, d, len);
        return;
    case SR_QUIC_FOUND:
    case SR_QUIC_NO_SNI:
        flow_route(f, &res, d, len);
        return;
    case SR_QUIC_MALFORMED:
        st->last_bad = res.reason;
        if (res.reason == SR_QUIC_REASON_TOO_LARGE) {
            sr__quic_dropped(q, f->lid, SR_METRICS_QDROP_MALFORMED);
            f->detail = sr_quic_reason_str(res.reason);
            sr__quic_flow_end(f, "too_large");
            return;
        }
        break;
    default:
        break;
    }
    /* Dropped, the flow kept: a spoofed datagram must not end someone else's flow. */
    sr__quic_dropped(q, f->lid, drop_of(res.status));
}

/* The listener's allow and deny rules on a new client, before anything is decrypted or
 * counted against the limits. Refused: one log line and the metrics, then the flow stays
 * as refused a while (its retransmits cost a lookup); with the table of refused flows full
 * (a flood from many addresses) the datagram is only dropped and counted. Returns true if
 * the client is refused. */
static bool
flow_start_denied(struct sr_quic *q, struct sr_quic_sock *s, const struct sr_flowkey *key,
                  const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct sr_access_result access;
    struct sr_quic_flow *f;

    if (s->lcfg->access.n == 0 || sr_access_check(&s->lcfg->access, &peer->sa, &access)) {
        return false;
    }
    sr_metrics_denied(q->host.metrics, access.label_id);
    sr__quic_dropped(q, s->lid, SR_METRICS_QDROP_REFUSED);
    if (q->n_refused >= SR_QUIC_REFUSED_MAX) {
        return true;
    }
    f = sr__quic_flow_new(q, s, key, peer, local);
    if (f == NULL) {
        return true;
    }
    f->gen = sr_generation_ref(q->gen);
    f->lcfg = s->lcfg;
    f->is_started = true;
    f->denied_by = access.label;
    q->n_flows++;
    sr_metrics_quic_started(q->host.metrics, f->lid);
    sr__quic_flow_end(f, "denied");
    return true;
}

void
sr__quic_flow_start(struct sr_quic *q, struct sr_quic_sock *s, const struct sr_flowkey *key,
                    const union sr_udp_peer *peer, const struct sr_udp_local *local,
                    const uint8_t *d, size_t len)
{
    struct sr_quic_result res;
    enum sr_metrics_quic_drop why;
    struct sr_quic_flow probe;
    struct sr_quic_flow *f;

    if (q->is_draining || s->is_retired || q->gen == NULL) {
        sr__quic_dropped(q, s->lid, SR_METRICS_QDROP_DRAINING);
        return;
    }
    sr_quic_initial_init(&q->initial, q->gen->cfg.max_hello_size);
    /* The first five bytes say whether this can start anything; only then is it counted
     * against the limits (a lock) and decrypted (HKDF and AES). */
    if (!sr_quic_starts_initial(d, len)) {
        sr_quic_feed(&q->crypto, &q->initial, d, len, &res); /* for the reason */
        sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
        sr__quic_dropped(q, s->lid, drop_of(res.status));
        return;
    }
    if (flow_start_denied(q, s, key, peer, local)) {
        return;
    }
    /* max_new_connections_per_ip: a token per new flow. A refused one is not remembered:
     * its retransmit asks for a token again, and gets one once the bucket has refilled. */
    if (!sr_shared_admit_rate(q->host.shared, &q->gen->cfg, s->lcfg,
                              q->gen->listener_slots[s->lcfg - q->gen->cfg.listeners], &peer->sa,
                              true)) {
        sr__quic_dropped(q, s->lid, SR_METRICS_QDROP_RATE);
        return;
    }
    memset(&probe, 0, sizeof(probe));
    probe.q = q;
    (void)sr_ipkey_from_sockaddr(&probe.ipkey, &peer->sa);
    if (!sr__quic_limits_admit(q, &probe, &why)) {
        sr__quic_dropped(q, s->lid, why);
        return;
    }
    sr_quic_feed(&q->crypto, &q->initial, d, len, &res);
    sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
    if (res.status != SR_QUIC_NEED_MORE && res.status != SR_QUIC_FOUND &&
        res.status != SR_QUIC_NO_SNI) {
        sr__quic_limits_release(&probe);
        sr__quic_dropped(q, s->lid, drop_of(res.status));
        if (res.status == SR_QUIC_MALFORMED) {
            refused_new(q, s, key, peer, local);
        }
        return;
    }
    f = sr__quic_flow_new(q, s, key, peer, local);
    if (f == NULL) {
        sr__quic_limits_release(&probe);
        return;
    }
    f->is_counted = probe.is_counted;
    f->has_ipkey = probe.has_ipkey;
    f->gen = sr_generation_ref(q->gen);
    f->lcfg = s->lcfg;
    f->is_started = true;
    q->n_flows++;
    sr_metrics_quic_started(q->host.metrics, f->lid);
    f->setup = calloc(1, sizeof(*f->setup));
    if (f->setup == NULL) {
        f->detail = "out of memory";
        sr__quic_flow_end(f, "error");
        return;
    }
    if (res.status != SR_QUIC_NEED_MORE) {
        flow_route(f, &res, d, len);
        return;
    }
    /* The ClientHello goes on in a later datagram (a post-quantum key share, say): hold
     * this one, and give way to it if too many flows wait so. */
    if (q->n_unrouted >= SR_QUIC_UNROUTED_MAX && q->unrouted_oldest != NULL) {
        struct sr_quic_flow *oldest = q->unrouted_oldest;

        oldest->detail = "evicted: too many flows waiting for their ClientHello";
        sr__quic_flow_end(oldest, "hello_timeout");
    }
    f->setup->older = q->unrouted_newest;
    if (q->unrouted_newest != NULL) {
        q->unrouted_newest->setup->newer = f;
    } else {
        q->unrouted_oldest = f;
    }
    q->unrouted_newest = f;
    q->n_unrouted++;
    if (sr__quic_flow_hold(f, d, len)) {
        sr__quic_flow_deadline(f, f->start_ms + f->gen->cfg.hello_timeout_ms);
    }
}
