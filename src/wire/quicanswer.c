/* SPDX-License-Identifier: MIT */
/* The reader of a QUIC server's first words to a client, for the self-test: it tells an
 * answer addressed to this client (Initial, Handshake, Retry, Version Negotiation) from
 * anything else, opens the server's Initial packets with the keys anyone can derive, and
 * keeps the few facts the self-test reports. It never builds or sends anything. */
#include "sniroute/wire/quicanswer.h"

#include <string.h>

#include "sniroute/wire/quicread.h"

/*
 * What is read (RFC 9000 17.2, 17.2.1, 17.2.5; RFC 9001 5, 5.8; RFC 9369 3.2, 3.3.3).
 * Widths in bytes; (i) a variable-length integer.
 *
 * Version Negotiation: byte 0 (0x80 set, the rest arbitrary), version 0, dcid 1 + 0..255,
 *   scid 1 + 0..255 (echoing the client's scid and dcid), then versions, 4 bytes each, at
 *   least one, to the end of the datagram.
 * Retry: byte 0 (type v1 3, v2 0), version, dcid, scid, token (the rest but 16 bytes, at
 *   least 1), integrity tag (16): AES-128-GCM with a fixed key and nonce per version, no
 *   plaintext, over the pseudo-packet (original dcid length, original dcid, the Retry
 *   without its tag).
 * Initial (v1 0, v2 1): version, dcid, scid, token (i) (0 from a server), length (i), packet
 *   number 1..4 and payload under the server's Initial keys; frames PADDING 0x00, PING 0x01,
 *   ACK 0x02/0x03, CRYPTO 0x06, CONNECTION_CLOSE 0x1c (error (i), frame type (i), reason
 *   (i) + bytes).
 * Handshake (v1 2, v2 3): version, dcid, scid, length (i), skipped by its length.
 */

#define LONG_HEADER   0x80
#define RESERVED_BITS 0x0c
#define PN_MAX_LEN    4
#define SAMPLE_LEN    16
#define TAG_LEN       16
#define HEADER_MAX    80 /* a server Initial's header: 1+4+1+20+1+20+1+8+4 = 60, with room */


/* RFC 9001 5.8 and RFC 9369 3.3.3: the Retry integrity key and nonce. */
static const uint8_t retry_key_v1[16] = {0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a,
                                         0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e};
static const uint8_t retry_nonce_v1[12] = {0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63,
                                           0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb};
static const uint8_t retry_key_v2[16] = {0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2,
                                         0x60, 0xfb, 0xcb, 0xce, 0xad, 0x7c, 0xcc, 0x92};
static const uint8_t retry_nonce_v2[12] = {0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c,
                                           0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a};

/* A length-prefixed (one byte) field: a view of it, within the block. */
static bool
cur_bytes8(struct sr_quic_cur *c, const uint8_t **p, size_t *n)
{
    uint8_t len;

    if (!sr_quic_cur_u8(c, &len) || len > c->left) {
        return false;
    }
    *p = c->p;
    *n = len;
    c->p += len;
    c->left -= len;
    return true;
}

static bool
same_id(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Nothing for the client: only the reason and the version field are left. */
static void
fail(struct sr_quicanswer *ans, enum sr_quicanswer_reason r)
{
    uint32_t version = ans->version;

    memset(ans, 0, sizeof(*ans));
    ans->kind = SR_QUICANSWER_NONE;
    ans->reason = r;
    ans->version = version;
}

/* Version Negotiation: the whole datagram. */
static void
read_vn(const struct sr_quicanswer_client *cl, struct sr_quic_cur c, struct sr_quicanswer *ans)
{
    const uint8_t *dcid;
    const uint8_t *scid;
    size_t dcid_len;
    size_t scid_len;

    if (!cur_bytes8(&c, &dcid, &dcid_len) || !cur_bytes8(&c, &scid, &scid_len) || c.left == 0 ||
        c.left % 4 != 0) {
        fail(ans, SR_QUICANSWER_REASON_HEADER);
        return;
    }
    if (!same_id(dcid, dcid_len, cl->scid, cl->scid_len) ||
        !same_id(scid, scid_len, cl->dcid, cl->dcid_len)) {
        fail(ans, SR_QUICANSWER_REASON_VN_ECHO);
        return;
    }
    for (; c.left >= 4; c.p += 4, c.left -= 4) {
        uint32_t v = get32(c.p);

        if (v == cl->version) {
            fail(ans, SR_QUICANSWER_REASON_VN_OURS);
            return;
        }
        if (ans->n_versions < SR_QUICANSWER_MAX_VERSIONS) {
            ans->versions[ans->n_versions++] = v;
        }
    }
    ans->kind = SR_QUICANSWER_VERSION_NEGOTIATION;
}

/* Retry: from <start> (byte 0) to the end of the datagram; <c> is after the scid. */
static void
read_retry(struct sr_quic_ctx *ctx, const struct sr_quicanswer_client *cl, const uint8_t *start,
           size_t len, struct sr_quic_cur c, const uint8_t *scid, size_t scid_len,
           struct sr_quicanswer *ans)
{
    struct sr_quic_keys keys;
    uint8_t tag[TAG_LEN];
    size_t body = len - TAG_LEN; /* the Retry without its tag */
    size_t n = 0;

    if (c.left < TAG_LEN + 1) {
        fail(ans, SR_QUICANSWER_REASON_TOKEN); /* a Retry must carry a token (17.2.5.2) */
        return;
    }
    if (same_id(scid, scid_len, cl->dcid, cl->dcid_len)) {
        fail(ans, SR_QUICANSWER_REASON_RETRY_SCID);
        return;
    }
    if (1 + cl->dcid_len + body > sizeof(ctx->plain)) {
        fail(ans, SR_QUICANSWER_REASON_HEADER);
        return;
    }
    /* The pseudo-packet, in the context's scratch. */
    ctx->plain[n++] = (uint8_t)cl->dcid_len;
    if (cl->dcid_len > 0) {
        memcpy(ctx->plain + n, cl->dcid, cl->dcid_len);
    }
    n += cl->dcid_len;
    memcpy(ctx->plain + n, start, body);
    n += body;
    memset(&keys, 0, sizeof(keys));
    memcpy(keys.key, cl->version == SR_QUIC_V2 ? retry_key_v2 : retry_key_v1, sizeof(keys.key));
    memcpy(keys.iv, cl->version == SR_QUIC_V2 ? retry_nonce_v2 : retry_nonce_v1, sizeof(keys.iv));
    /* Sealing nothing under packet number 0 (the nonce as given) yields the tag alone. */
    if (!sr__quic_aead(ctx, &keys, 0, ctx->plain, n, tag, 0, tag, true) ||
        memcmp(tag, start + body, TAG_LEN) != 0) {
        fail(ans, SR_QUICANSWER_REASON_RETRY_TAG);
        return;
    }
    ans->kind = SR_QUICANSWER_RETRY;
    memcpy(ans->scid, scid, scid_len);
    ans->scid_len = scid_len;
    ans->token = c.p;
    ans->token_len = c.left - TAG_LEN;
}

/* Copy what <data>/<len> at stream offset <off> holds of the first bytes into the head;
 * <*have> marks which arrived. */
static void
head_put(struct sr_quicanswer *ans, uint64_t *have, uint64_t off, const uint8_t *data, size_t len)
{
    size_t i;

    for (i = 0; i < len && off + i < SR_QUICANSWER_HELLO_HEAD; i++) {
        ans->hello_head[off + i] = data[i];
        *have |= UINT64_C(1) << (off + i);
    }
    for (ans->hello_head_len = 0;
         ans->hello_head_len < SR_QUICANSWER_HELLO_HEAD && (*have >> ans->hello_head_len & 1) != 0;
         ans->hello_head_len++) {
    }
}

static enum sr_quicanswer_reason
read_frames(const uint8_t *p, size_t n, struct sr_quicanswer *ans, uint64_t *have)
{
    struct sr_quic_cur c = {p, n};
    uint64_t off;
    uint64_t len;
    uint8_t type;

    while (sr_quic_cur_u8(&c, &type)) {
        switch (type) {
        case SR_QUIC_FRAME_PADDING:
        case SR_QUIC_FRAME_PING:
            break;
        case SR_QUIC_FRAME_ACK:
        case SR_QUIC_FRAME_ACK_ECN:
            if (!sr_quic_skip_ack(&c, type == SR_QUIC_FRAME_ACK_ECN)) {
                return SR_QUICANSWER_REASON_FRAME;
            }
            break;
        case SR_QUIC_FRAME_CRYPTO:
            if (!sr_quic_cur_varint(&c, &off) || !sr_quic_cur_varint(&c, &len) || len > c.left) {
                return SR_QUICANSWER_REASON_FRAME;
            }
            head_put(ans, have, off, c.p, (size_t)len);
            (void)sr_quic_cur_skip(&c, len);
            break;
        case SR_QUIC_FRAME_CONNECTION_CLOSE:
            if (!sr_quic_cur_varint(&c, &ans->close_error) || !sr_quic_cur_varint(&c, &ans->close_frame_type) ||
                !sr_quic_cur_varint(&c, &len) || len > c.left) {
                return SR_QUICANSWER_REASON_FRAME;
            }
            ans->has_close = true;
            ans->close_reason_len =
                len < sizeof(ans->close_reason) ? (size_t)len : sizeof(ans->close_reason);
            memcpy(ans->close_reason, c.p, ans->close_reason_len);
            (void)sr_quic_cur_skip(&c, len);
            break;
        default:
            return SR_QUICANSWER_REASON_FRAME;
        }
    }
    return SR_QUICANSWER_REASON_NONE;
}

/* Unprotect and read the server Initial <pkt>/<pkt_len> whose packet number starts at
 * <pn_off>, under <keys> (RFC 9001 5.4, 5.3). */
static enum sr_quicanswer_reason
read_initial(struct sr_quic_ctx *ctx, const struct sr_quic_keys *keys, const uint8_t *pkt,
             size_t pkt_len, size_t pn_off, struct sr_quicanswer *ans, uint64_t *have)
{
    uint8_t hdr[HEADER_MAX];
    uint8_t mask[5];
    uint64_t pn = 0;
    size_t pn_len;
    size_t i;

    if (pn_off + PN_MAX_LEN > sizeof(hdr) || pn_off + PN_MAX_LEN + SAMPLE_LEN > pkt_len) {
        return SR_QUICANSWER_REASON_HEADER;
    }
    if (!sr__quic_hp_mask(ctx, keys->hp, pkt + pn_off + PN_MAX_LEN, mask)) {
        return SR_QUICANSWER_REASON_DECRYPT;
    }
    memcpy(hdr, pkt, pn_off + PN_MAX_LEN);
    hdr[0] ^= mask[0] & 0x0f;
    pn_len = (size_t)(hdr[0] & 0x03) + 1;
    for (i = 0; i < pn_len; i++) {
        hdr[pn_off + i] ^= mask[1 + i];
        pn = pn << 8 | hdr[pn_off + i];
    }
    if (pkt_len - pn_off - pn_len < TAG_LEN ||
        !sr__quic_aead(ctx, keys, pn, hdr, pn_off + pn_len, pkt + pn_off + pn_len,
                       pkt_len - pn_off - pn_len, ctx->plain, false)) {
        return SR_QUICANSWER_REASON_DECRYPT;
    }
    /* Checked only once authenticated, as RFC 9000 17.2 says: before, they may be noise. */
    if ((hdr[0] & RESERVED_BITS) != 0) {
        return SR_QUICANSWER_REASON_RESERVED_BITS;
    }
    return read_frames(ctx->plain, pkt_len - pn_off - pn_len - TAG_LEN, ans, have);
}

void
sr_quicanswer_read(struct sr_quic_ctx *ctx, const struct sr_quicanswer_client *cl,
                   const uint8_t *dgram, size_t len, struct sr_quicanswer *ans)
{
    struct sr_quic_cur c = {dgram, len};
    struct sr_quic_keys keys;
    bool has_keys = false;
    uint64_t have = 0; /* which of the first CRYPTO bytes arrived */

    memset(ans, 0, sizeof(*ans));
    if (len == 0) {
        fail(ans, SR_QUICANSWER_REASON_HEADER);
        return;
    }
    while (c.left > 0) {
        const uint8_t *start = c.p;
        bool first = start == dgram;
        struct sr_quicanswer before = *ans; /* a later packet that fails adds nothing */
        const uint8_t *dcid;
        const uint8_t *scid;
        size_t dcid_len;
        size_t scid_len;
        enum sr_quicanswer_reason r = SR_QUICANSWER_REASON_NONE;
        enum sr_quic_ptype type;
        uint64_t v;
        uint8_t b0;

        (void)sr_quic_cur_u8(&c, &b0);
        if ((b0 & LONG_HEADER) == 0) {
            r = SR_QUICANSWER_REASON_SHORT_HEADER;
        } else if (c.left < 4) {
            r = SR_QUICANSWER_REASON_HEADER;
        } else {
            uint32_t version = get32(c.p);

            (void)sr_quic_cur_skip(&c, 4);
            if (first) {
                ans->version = version;
                if (version == 0) {
                    read_vn(cl, c, ans);
                    return;
                }
            }
            if (version != cl->version) {
                r = SR_QUICANSWER_REASON_VERSION;
            } else if (!cur_bytes8(&c, &dcid, &dcid_len) || !cur_bytes8(&c, &scid, &scid_len) ||
                       dcid_len > SR_QUIC_MAX_CID || scid_len > SR_QUIC_MAX_CID) {
                r = SR_QUICANSWER_REASON_HEADER;
            } else if (!same_id(dcid, dcid_len, cl->scid, cl->scid_len)) {
                r = SR_QUICANSWER_REASON_DCID;
            }
        }
        if (r != SR_QUICANSWER_REASON_NONE) {
            if (first) {
                fail(ans, r);
            }
            return; /* after the first packet: the end of what this datagram says */
        }
        type = sr_quic_packet_type(cl->version == SR_QUIC_V2, b0);
        if (type == SR_QUIC_PT_RETRY) {
            if (first) { /* it has no Length: it cannot come after another packet */
                read_retry(ctx, cl, start, len, c, scid, scid_len, ans);
            }
            return;
        }
        if (type == SR_QUIC_PT_0RTT) {
            r = SR_QUICANSWER_REASON_TYPE;
        } else if (type == SR_QUIC_PT_INITIAL && (!sr_quic_cur_varint(&c, &v) || v != 0)) {
            r = SR_QUICANSWER_REASON_TOKEN; /* a server's Initial has none (17.2.2) */
        } else if (!sr_quic_cur_varint(&c, &v) || v > c.left) {
            r = SR_QUICANSWER_REASON_HEADER;
        } else if (type == SR_QUIC_PT_INITIAL) {
            if (!has_keys &&
                !sr_quic_initial_keys(ctx, cl->version, cl->dcid, cl->dcid_len, true, &keys)) {
                r = SR_QUICANSWER_REASON_DECRYPT;
            } else {
                has_keys = true;
                r = read_initial(ctx, &keys, start, (size_t)(c.p - start) + (size_t)v,
                                 (size_t)(c.p - start), ans, &have);
            }
        }
        if (r != SR_QUICANSWER_REASON_NONE) {
            if (first) {
                fail(ans, r);
            } else {
                *ans = before;
            }
            return;
        }
        if (first) {
            ans->kind = SR_QUICANSWER_INITIAL;
            memcpy(ans->scid, scid, scid_len);
            ans->scid_len = scid_len;
        }
        if (type == SR_QUIC_PT_INITIAL) {
            ans->n_initial++;
        } else {
            ans->n_handshake++;
        }
        (void)sr_quic_cur_skip(&c, v);
    }
}

const char *
sr_quicanswer_reason_str(enum sr_quicanswer_reason r)
{
    switch (r) {
    case SR_QUICANSWER_REASON_NONE:
        return "none";
    case SR_QUICANSWER_REASON_SHORT_HEADER:
        return "no long header";
    case SR_QUICANSWER_REASON_HEADER:
        return "header does not parse";
    case SR_QUICANSWER_REASON_VERSION:
        return "another QUIC version";
    case SR_QUICANSWER_REASON_DCID:
        return "addressed to another connection ID";
    case SR_QUICANSWER_REASON_TYPE:
        return "a 0-RTT packet";
    case SR_QUICANSWER_REASON_TOKEN:
        return "token where none belongs, or none where one must be";
    case SR_QUICANSWER_REASON_DECRYPT:
        return "Initial does not decrypt";
    case SR_QUICANSWER_REASON_RESERVED_BITS:
        return "reserved bits set";
    case SR_QUICANSWER_REASON_FRAME:
        return "bad frame in an Initial";
    case SR_QUICANSWER_REASON_RETRY_TAG:
        return "Retry integrity tag does not verify";
    case SR_QUICANSWER_REASON_RETRY_SCID:
        return "Retry from our own DCID";
    case SR_QUICANSWER_REASON_VN_ECHO:
        return "Version Negotiation for other connection IDs";
    case SR_QUICANSWER_REASON_VN_OURS:
        return "Version Negotiation offering our own version";
    }
    return "unknown reason";
}
