/* SPDX-License-Identifier: MIT */
/* Flows by the connection ID their server chose, and a client that returns from another
 * address with it (quicmigrate.h). Each relaying flow has at most one ID in the worker's
 * second table (q->cids), a small allocation made when its server's first long header
 * packet passes; lengths in use are counted, so a short header packet, whose ID length is
 * not on the wire, is looked up once per length servers actually use. */
#include "sniroute/proxy/quicmigrate.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/quic.h"

struct sr_quic_cidnode {
    struct sr_flownode node; /* first: the table hands this back */
    struct sr_quic_flow *flow;
};

void
sr__quic_cid_forget(struct sr_quic_flow *f)
{
    struct sr_quic *q = f->q;

    if (f->cid == NULL) {
        return;
    }
    sr_flowtab_remove(&q->cids, &f->cid->node);
    q->n_cids_by_len[f->cid->node.key.sock >> 24]--;
    free(f->cid);
    f->cid = NULL;
}

void
sr__quic_cid_learn(struct sr_quic_flow *f, const uint8_t *d, size_t len)
{
    struct sr_quic *q = f->q;
    struct sr_quic_cids ids;
    struct sr_flowkey key;

    if (len == 0 || (d[0] & 0x80) == 0 || !sr_quic_long_cids(d, len, &ids) || ids.scid_len == 0) {
        return; /* a short header; or a server with empty IDs, which binds its client to
                   an address anyway */
    }
    sr_flowkey_set_cid(&key, f->sock->id, ids.scid, ids.scid_len);
    if (f->cid != NULL && memcmp(&f->cid->node.key, &key, sizeof(key)) == 0) {
        return;
    }
    if (sr_flowtab_find(&q->cids, &key) != NULL) {
        return;
    }
    sr__quic_cid_forget(f);
    f->cid = malloc(sizeof(*f->cid));
    if (f->cid == NULL) {
        return; /* the flow just cannot follow its client */
    }
    f->cid->node.key = key;
    f->cid->flow = f;
    sr_flowtab_insert(&q->cids, &f->cid->node);
    q->n_cids_by_len[ids.scid_len]++;
}

static struct sr_quic_flow *
find(struct sr_quic *q, uint32_t sock, const uint8_t *cid, size_t len)
{
    struct sr_flownode *node;
    struct sr_flowkey key;

    sr_flowkey_set_cid(&key, sock, cid, len);
    node = sr_flowtab_find(&q->cids, &key);
    return node == NULL ? NULL : ((struct sr_quic_cidnode *)node)->flow;
}

struct sr_quic_flow *
sr__quic_cid_find(struct sr_quic *q, const struct sr_quic_sock *s, const uint8_t *d, size_t len)
{
    struct sr_quic_flow *f = NULL;
    struct sr_quic_cids ids;
    size_t n;

    if (q->cids.n == 0 || len == 0) {
        return NULL;
    }
    if ((d[0] & 0x80) != 0) {
        if (sr_quic_long_cids(d, len, &ids) && ids.dcid_len > 0) {
            f = find(q, s->id, ids.dcid, ids.dcid_len);
        }
    } else {
        for (n = 1; n <= SR_QUIC_MAX_CID && f == NULL; n++) {
            if (q->n_cids_by_len[n] > 0 && sr_quic_is_short(d, len, n)) {
                f = find(q, s->id, d + 1, n);
            }
        }
    }
    return f != NULL && f->state == SR_QF_RELAYING ? f : NULL;
}

void
sr__quic_flow_migrate(struct sr_quic_flow *f, const struct sr_flowkey *key,
                      const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct sr_quic *q = f->q;

    sr_flowtab_remove(&q->table, &f->node);
    f->node.key = *key;
    f->client = *peer;
    f->local = *local;
    sr_flowtab_insert(&q->table, &f->node);
    f->n_migrations++;
}
