/* SPDX-License-Identifier: MIT */
/* The QUIC Initial reader with one purpose: find the ClientHello a QUIC client sends, so a
 * UDP flow can be routed by name like a TCP connection. It parses long headers, removes the
 * Initial packet protection (keys from the client's own connection ID, through libcrypto),
 * walks the frames and places CRYPTO data by offset, then hands the reassembled handshake
 * message to the ClientHello parser. It keeps no transport state, answers nothing, and never
 * reads 0-RTT, Handshake or 1-RTT packets beyond their headers. */
#include "sniroute/wire/quic.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "sniroute/wire/quicread.h"

/*
 * What is read, and what each field must satisfy. Widths in bytes; (i) is a variable-length
 * integer (RFC 9000 16: 1, 2, 4 or 8 bytes, the top two bits of the first byte give which).
 *
 * Long header packet (RFC 9000 17.2; RFC 8999 for the version-independent part)
 *   byte 0                   1    0x80 set (long header): else, in the first packet, NOT_QUIC.
 *                                 0x40 (fixed bit) not checked: RFC 9287 lets a client clear
 *                                 it. 0x30 type: v1 Initial 0, 0-RTT 1, Handshake 2, Retry 3;
 *                                 v2 (RFC 9369 3.2) Retry 0, Initial 1, 0-RTT 2, Handshake 3.
 *                                 0x0f protected in an Initial (RFC 9001 5.4.1).
 *   version                  4    1 or 0x6b3343cf; 0 is Version Negotiation, which only a
 *                                 server sends; anything else: NOT_QUIC, unsupported version
 *   dcid                     1 + 0..20 (RFC 9000 17.2); an Initial's at least 8 (7.2)
 *   scid                     1 + 0..20
 *   token (Initial only)     (i) + bytes, within the datagram; not read
 *   length                   (i), packet number and payload, within the datagram
 * Initial packet, after header protection is removed (RFC 9001 5.4)
 *   sample                   16 bytes from 4 after the packet number's start: the packet
 *                            must hold them whatever the packet number length is
 *   byte 0 & 0x0c            reserved, 0 once the packet is authenticated (RFC 9000 17.2)
 *   byte 0 & 0x03            packet number length - 1
 *   packet number            1..4, recovered against the largest seen (RFC 9000 A.3)
 *   payload                  AEAD_AES_128_GCM, 16-byte tag; at least one byte of frames
 * Frames an Initial may carry (RFC 9000 12.4, 19), type in its shortest encoding (one byte)
 *   PADDING 0x00, PING 0x01
 *   ACK 0x02/0x03            largest (i), delay (i), range count (i), first range (i), then
 *                            count x (gap (i), range (i)), with 0x03 three ECN counts (i);
 *                            no range may reach below packet number 0 (19.3.1)
 *   CRYPTO 0x06              offset (i), length (i), data; offset + length < 2^62 (19.6)
 *   CONNECTION_CLOSE 0x1c    error (i), frame type (i), reason (i) + bytes
 * CRYPTO stream at the Initial level: the ClientHello and nothing else (RFC 9001 4.1.3), a
 * bare handshake message; bytes at one offset must never change (RFC 9000 2.2).
 */

#define LONG_HEADER   0x80
#define RESERVED_BITS 0x0c
#define PN_LEN_MASK   0x03
#define PN_MAX_LEN    4
#define SAMPLE_LEN    16
#define TAG_LEN       16
#define VARINT_MAX    ((UINT64_C(1) << 62) - 1)

static const uint8_t salt_v1[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                    0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
static const uint8_t salt_v2[20] = {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                                    0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};

static bool
is_supported(uint32_t version)
{
    return version == SR_QUIC_V1 || version == SR_QUIC_V2;
}

/* ---- libcrypto: HKDF, header protection mask, AEAD ------------------------------------- */

bool
sr_quic_ctx_init(struct sr_quic_ctx *ctx)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[2];

    memset(ctx, 0, sizeof(*ctx));
    ctx->gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    ctx->ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
    ctx->hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    ctx->aead_ctx = EVP_CIPHER_CTX_new();
    ctx->hp_ctx = EVP_CIPHER_CTX_new();
    ctx->kdf_ctx = ctx->hkdf != NULL ? EVP_KDF_CTX_new(ctx->hkdf) : NULL;
    /* Bind each cipher to its context now: later calls pass only keys and nonces, which in
     * OpenSSL 3.0 reuses the provider's context instead of allocating a new one. */
    if (ctx->gcm == NULL || ctx->ecb == NULL || ctx->hkdf == NULL || ctx->aead_ctx == NULL ||
        ctx->hp_ctx == NULL || ctx->kdf_ctx == NULL ||
        EVP_EncryptInit_ex2(ctx->aead_ctx, ctx->gcm, NULL, NULL, NULL) != 1 ||
        EVP_EncryptInit_ex2(ctx->hp_ctx, ctx->ecb, NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx->hp_ctx, 0) != 1) {
        sr_quic_ctx_fini(ctx);
        return false;
    }
    /* The digest once: set per derivation, it would be looked up by name every time. */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_KDF_CTX_set_params(ctx->kdf_ctx, params) != 1) {
        sr_quic_ctx_fini(ctx);
        return false;
    }
    return true;
}

void
sr_quic_ctx_fini(struct sr_quic_ctx *ctx)
{
    /* Each free function accepts NULL. Reverse order of creation. */
    EVP_KDF_CTX_free(ctx->kdf_ctx);
    EVP_CIPHER_CTX_free(ctx->hp_ctx);
    EVP_CIPHER_CTX_free(ctx->aead_ctx);
    EVP_KDF_free(ctx->hkdf);
    EVP_CIPHER_free(ctx->ecb);
    EVP_CIPHER_free(ctx->gcm);
    ctx->kdf_ctx = NULL;
    ctx->hp_ctx = NULL;
    ctx->aead_ctx = NULL;
    ctx->hkdf = NULL;
    ctx->ecb = NULL;
    ctx->gcm = NULL;
}

/* One HKDF step (RFC 5869) with SHA-256, set on the context once by sr_quic_ctx_init():
 * Extract when <salt> is given, else Expand with <info>. Each call passes every parameter
 * its mode reads (a parameter of the other mode left from an earlier call is not read). The
 * inputs are copied to local arrays because OSSL_PARAM takes non-const pointers; none is over
 * 64 bytes. */
static bool
hkdf(struct sr_quic_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *salt,
     size_t salt_len, const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    uint8_t k[64];
    uint8_t s[64];
    uint8_t in[64];
    OSSL_PARAM params[4];
    size_t n = 0;
    int mode = salt != NULL ? EVP_KDF_HKDF_MODE_EXTRACT_ONLY : EVP_KDF_HKDF_MODE_EXPAND_ONLY;

    if (key_len > sizeof(k) || salt_len > sizeof(s) || info_len > sizeof(in)) {
        return false;
    }
    if (key_len > 0) { /* an empty DCID may come as NULL */
        memcpy(k, key, key_len);
    }
    params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, k, key_len);
    if (salt != NULL) {
        memcpy(s, salt, salt_len);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, s, salt_len);
    } else {
        memcpy(in, info, info_len);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, in, info_len);
    }
    params[n] = OSSL_PARAM_construct_end();
    return EVP_KDF_derive(ctx->kdf_ctx, out, out_len, params) == 1;
}

/* HKDF-Expand-Label with an empty context (RFC 8446 7.1, as RFC 9001 5.1 uses it). */
static bool
expand_label(struct sr_quic_ctx *ctx, const uint8_t secret[32], const char *label, uint8_t *out,
             size_t out_len)
{
    static const char prefix[] = "tls13 ";
    uint8_t info[64];
    size_t plen = sizeof(prefix) - 1;
    size_t llen = strlen(label);
    size_t n = 0;

    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(plen + llen);
    memcpy(info + n, prefix, plen);
    n += plen;
    memcpy(info + n, label, llen);
    n += llen;
    info[n++] = 0; /* context: empty */
    return hkdf(ctx, secret, 32, NULL, 0, info, n, out, out_len);
}

bool
sr_quic_initial_keys(struct sr_quic_ctx *ctx, uint32_t version, const uint8_t *dcid,
                     size_t dcid_len, bool is_server, struct sr_quic_keys *keys)
{
    bool v2 = version == SR_QUIC_V2;
    uint8_t initial[32];
    uint8_t secret[32];
    bool ok;

    if (!is_supported(version) || dcid_len > SR_QUIC_MAX_CID) {
        return false;
    }
    /* RFC 9001 5.2; RFC 9369 3.3.1 and 3.3.2 for v2's salt and labels. */
    ok =
        hkdf(ctx, dcid, dcid_len, v2 ? salt_v2 : salt_v1, sizeof(salt_v1), NULL, 0, initial,
             sizeof(initial)) &&
        expand_label(ctx, initial, is_server ? "server in" : "client in", secret, sizeof(secret)) &&
        expand_label(ctx, secret, v2 ? "quicv2 key" : "quic key", keys->key, sizeof(keys->key)) &&
        expand_label(ctx, secret, v2 ? "quicv2 iv" : "quic iv", keys->iv, sizeof(keys->iv)) &&
        expand_label(ctx, secret, v2 ? "quicv2 hp" : "quic hp", keys->hp, sizeof(keys->hp));
    memset(initial, 0, sizeof(initial));
    memset(secret, 0, sizeof(secret));
    return ok;
}

bool
sr__quic_hp_mask(struct sr_quic_ctx *ctx, const uint8_t hp[16], const uint8_t *sample,
                 uint8_t mask[5])
{
    uint8_t block[SAMPLE_LEN + 16]; /* EVP may write a block more than it was given */
    int n = 0;

    if (EVP_EncryptInit_ex2(ctx->hp_ctx, NULL, hp, NULL, NULL) != 1 ||
        EVP_EncryptUpdate(ctx->hp_ctx, block, &n, sample, SAMPLE_LEN) != 1 || n != SAMPLE_LEN) {
        return false;
    }
    memcpy(mask, block, 5);
    return true;
}

enum aead_result {
    AEAD_OK,
    AEAD_BAD_TAG,
    AEAD_LIBCRYPTO,
};

/* RFC 9001 5.3: the nonce is the IV XORed with the packet number, right-aligned. */
static enum aead_result
aead(struct sr_quic_ctx *ctx, const struct sr_quic_keys *keys, uint64_t pn, const uint8_t *aad,
     size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out, bool seal)
{
    EVP_CIPHER_CTX *c = ctx->aead_ctx;
    uint8_t nonce[12];
    uint8_t tag[TAG_LEN];
    size_t text_len = seal ? in_len : in_len - TAG_LEN;
    int n = 0;
    int fin = 0;
    size_t i;

    if ((!seal && in_len < TAG_LEN) || aad_len > INT32_MAX || in_len > INT32_MAX) {
        return AEAD_LIBCRYPTO;
    }
    memcpy(nonce, keys->iv, sizeof(nonce));
    for (i = 0; i < 8; i++) {
        nonce[sizeof(nonce) - 1 - i] ^= (uint8_t)(pn >> (8 * i));
    }
    if (seal) {
        if (EVP_EncryptInit_ex2(c, NULL, keys->key, nonce, NULL) != 1 ||
            EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
            EVP_EncryptUpdate(c, out, &n, in, (int)text_len) != 1 ||
            EVP_EncryptFinal_ex(c, out + n, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) != 1) {
            return AEAD_LIBCRYPTO;
        }
        memcpy(out + text_len, tag, TAG_LEN);
        return AEAD_OK;
    }
    memcpy(tag, in + text_len, TAG_LEN);
    if (EVP_DecryptInit_ex2(c, NULL, keys->key, nonce, NULL) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(c, out, &n, in, (int)text_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1) {
        return AEAD_LIBCRYPTO;
    }
    /* The one failure that is the packet's fault: the tag does not verify. */
    return EVP_DecryptFinal_ex(c, out + n, &fin) == 1 ? AEAD_OK : AEAD_BAD_TAG;
}

bool
sr__quic_aead(struct sr_quic_ctx *ctx, const struct sr_quic_keys *keys, uint64_t pn,
              const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
              bool seal)
{
    return aead(ctx, keys, pn, aad, aad_len, in, in_len, out, seal) == AEAD_OK;
}

/* ---- reading bytes -------------------------------------------------------------------- */

/* ---- packets -------------------------------------------------------------------------- */

/* One long header packet, its fields as views into the datagram. */
struct packet {
    const uint8_t *start;
    uint32_t version;
    enum sr_quic_ptype type;
    const uint8_t *dcid;
    size_t dcid_len;
    const uint8_t *scid;
    size_t scid_len;
    size_t pn_off; /* from start: where the packet number begins */
    size_t len;    /* from start to the end of the payload */
};

/* Read the long header at <p>/<left> up to the end of the Length field. <pkt->version> is set
 * as soon as it is read, whatever follows. */
static enum sr_quic_reason
parse_header(const uint8_t *p, size_t left, struct packet *pkt)
{
    struct sr_quic_cur c = {p, left};
    uint8_t b0;
    uint8_t n;
    uint64_t v;

    memset(pkt, 0, sizeof(*pkt));
    pkt->start = p;
    if (!sr_quic_cur_u8(&c, &b0)) {
        return SR_QUIC_REASON_TRUNCATED;
    }
    if ((b0 & LONG_HEADER) == 0) {
        return SR_QUIC_REASON_SHORT_HEADER;
    }
    if (c.left < 4) {
        return SR_QUIC_REASON_TRUNCATED;
    }
    pkt->version = (uint32_t)c.p[0] << 24 | (uint32_t)c.p[1] << 16 | (uint32_t)c.p[2] << 8 | c.p[3];
    (void)sr_quic_cur_skip(&c, 4);
    if (pkt->version == 0) {
        return SR_QUIC_REASON_VERSION_NEGOTIATION;
    }
    if (!is_supported(pkt->version)) {
        return SR_QUIC_REASON_VERSION;
    }
    pkt->type = sr_quic_packet_type(pkt->version == SR_QUIC_V2, b0);
    if (!sr_quic_cur_u8(&c, &n)) {
        return SR_QUIC_REASON_HEADER;
    }
    if (n > SR_QUIC_MAX_CID) {
        return SR_QUIC_REASON_CID_LENGTH;
    }
    pkt->dcid = c.p;
    pkt->dcid_len = n;
    if (!sr_quic_cur_skip(&c, n) || !sr_quic_cur_u8(&c, &n)) {
        return SR_QUIC_REASON_HEADER;
    }
    if (n > SR_QUIC_MAX_CID) {
        return SR_QUIC_REASON_CID_LENGTH;
    }
    pkt->scid = c.p;
    pkt->scid_len = n;
    if (!sr_quic_cur_skip(&c, n)) {
        return SR_QUIC_REASON_HEADER;
    }
    /* A Retry has no Length (RFC 9000 17.2.5), and a client never sends one. */
    if (pkt->type == SR_QUIC_PT_RETRY) {
        return SR_QUIC_REASON_RETRY;
    }
    if (pkt->type == SR_QUIC_PT_INITIAL &&
        (!sr_quic_cur_varint(&c, &v) || !sr_quic_cur_skip(&c, v))) {
        return SR_QUIC_REASON_HEADER; /* the token */
    }
    if (!sr_quic_cur_varint(&c, &v)) {
        return SR_QUIC_REASON_HEADER;
    }
    if (v > c.left) {
        return SR_QUIC_REASON_PACKET_LENGTH;
    }
    pkt->pn_off = left - c.left;
    pkt->len = pkt->pn_off + (size_t)v;
    return SR_QUIC_REASON_NONE;
}

/* RFC 9000 A.3: the full packet number closest to the one expected next. */
static uint64_t
decode_pn(int64_t largest, uint64_t truncated, size_t pn_len)
{
    uint64_t expected = (uint64_t)(largest + 1);
    uint64_t win = UINT64_C(1) << (8 * pn_len);
    uint64_t hwin = win / 2;
    uint64_t candidate = (expected & ~(win - 1)) | truncated;

    if (candidate + hwin <= expected && candidate < (UINT64_C(1) << 62) - win) {
        return candidate + win;
    }
    if (candidate > expected + hwin && candidate >= win) {
        return candidate - win;
    }
    return candidate;
}

/* ---- one datagram --------------------------------------------------------------------- */

/* Everything a feed may change in the flow besides the CRYPTO bytes, saved to undo it. */
struct saved {
    uint32_t version;
    uint8_t dcid_len;
    uint8_t scid_len;
    uint8_t dcid[SR_QUIC_MAX_CID];
    uint8_t scid[SR_QUIC_MAX_CID];
    unsigned n_initial;
    size_t contig;
    size_t hello_len;
    size_t crypto_end;
    int64_t largest_pn;
};

struct feed {
    struct sr_quic_ctx *ctx;
    struct sr_quic_initial *st;
    struct sr_quic_result *res;
    size_t dgram_len;
    size_t lo; /* CRYPTO offsets first received in this datagram lie in [lo, hi) */
    size_t hi;
};

static bool
bit_get(const uint8_t *bits, size_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

static void
bit_set(uint8_t *bits, size_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Place CRYPTO bytes <data>/<len> at stream offset <off>. */
static enum sr_quic_reason
crypto_put(struct feed *f, uint64_t off, const uint8_t *data, size_t len)
{
    struct sr_quic_initial *st = f->st;
    size_t i;

    if (len == 0) {
        return SR_QUIC_REASON_NONE; /* nothing to place, wherever it claims to be */
    }
    if (off > st->max_hello || len > st->max_hello - off) {
        return SR_QUIC_REASON_TOO_LARGE;
    }
    /* Widen the undo range first: a conflict may stop the loop after new bytes were placed. */
    if (off < f->lo) {
        f->lo = (size_t)off;
    }
    if (off + len > f->hi) {
        f->hi = (size_t)off + len;
    }
    for (i = 0; i < len; i++) {
        size_t at = (size_t)off + i;

        if (bit_get(st->have, at)) {
            if (st->crypto[at] != data[i]) {
                return SR_QUIC_REASON_CRYPTO_CHANGED;
            }
            continue;
        }
        st->crypto[at] = data[i];
        bit_set(st->have, at);
        bit_set(f->ctx->undo, at);
    }
    if (off + len > st->crypto_end) {
        st->crypto_end = (size_t)off + len;
    }
    return SR_QUIC_REASON_NONE;
}

/* The frames of one Initial's plaintext. */
static enum sr_quic_reason
read_frames(struct feed *f, const uint8_t *p, size_t n)
{
    struct sr_quic_cur c = {p, n};
    enum sr_quic_reason r;
    uint8_t type;
    uint64_t off;
    uint64_t len;
    uint64_t v;

    while (sr_quic_cur_u8(&c, &type)) {
        switch (type) {
        case SR_QUIC_FRAME_PADDING:
            while (c.left > 0 && c.p[0] == SR_QUIC_FRAME_PADDING) {
                c.p++;
                c.left--;
            }
            break;
        case SR_QUIC_FRAME_PING:
            break;
        case SR_QUIC_FRAME_ACK:
        case SR_QUIC_FRAME_ACK_ECN:
            if (!sr_quic_skip_ack(&c, type == SR_QUIC_FRAME_ACK_ECN)) {
                return SR_QUIC_REASON_FRAME;
            }
            break;
        case SR_QUIC_FRAME_CRYPTO:
            if (!sr_quic_cur_varint(&c, &off) || !sr_quic_cur_varint(&c, &len) || len > c.left ||
                off + len > VARINT_MAX) {
                return SR_QUIC_REASON_FRAME;
            }
            if (len > 0) { /* judged before it moves crypto_end */
                f->res->n_crypto_frames++;
                if (off < f->st->crypto_end) {
                    f->res->n_crypto_out_of_order++;
                }
            }
            r = crypto_put(f, off, c.p, (size_t)len);
            if (r != SR_QUIC_REASON_NONE) {
                return r;
            }
            (void)sr_quic_cur_skip(&c, len);
            break;
        case SR_QUIC_FRAME_CONNECTION_CLOSE:
            if (!sr_quic_cur_varint(&c, &v) || !sr_quic_cur_varint(&c, &v) ||
                !sr_quic_cur_varint(&c, &v) || !sr_quic_cur_skip(&c, v)) {
                return SR_QUIC_REASON_FRAME;
            }
            f->res->has_close = true;
            break;
        default: /* any other type, or one of these in a longer encoding than needed */
            return SR_QUIC_REASON_FRAME_TYPE;
        }
    }
    return SR_QUIC_REASON_NONE;
}

/* Unprotect, authenticate and read one Initial packet. */
static enum sr_quic_reason
read_initial(struct feed *f, const struct packet *pkt)
{
    struct sr_quic_ctx *ctx = f->ctx;
    struct sr_quic_initial *st = f->st;
    uint8_t mask[5];
    uint8_t b0;
    size_t pn_len;
    size_t hdr_len;
    uint64_t pn = 0;
    size_t i;
    enum aead_result ar;

    if (f->dgram_len < SR_QUIC_MIN_INITIAL_DATAGRAM) {
        return SR_QUIC_REASON_SMALL_DATAGRAM;
    }
    if (pkt->dcid_len < SR_QUIC_MIN_INITIAL_DCID) {
        return SR_QUIC_REASON_DCID_SHORT;
    }
    /* RFC 9001 5.4.2: the sample starts 4 bytes past the packet number, whatever its length. */
    if (pkt->len < pkt->pn_off + PN_MAX_LEN + SAMPLE_LEN) {
        return SR_QUIC_REASON_PACKET_SHORT;
    }
    if (!st->has_keys || st->keys_version != pkt->version || st->keys_dcid_len != pkt->dcid_len ||
        memcmp(st->keys_dcid, pkt->dcid, pkt->dcid_len) != 0) {
        st->has_keys = false; /* a cache, not flow state: no need to undo it */
        if (!sr_quic_initial_keys(ctx, pkt->version, pkt->dcid, pkt->dcid_len, false, &st->keys)) {
            return SR_QUIC_REASON_LIBCRYPTO;
        }
        st->has_keys = true;
        st->keys_version = pkt->version;
        st->keys_dcid_len = (uint8_t)pkt->dcid_len;
        memcpy(st->keys_dcid, pkt->dcid, pkt->dcid_len);
    }
    if (!sr__quic_hp_mask(ctx, st->keys.hp, pkt->start + pkt->pn_off + PN_MAX_LEN, mask)) {
        return SR_QUIC_REASON_LIBCRYPTO;
    }
    b0 = pkt->start[0] ^ (mask[0] & 0x0f);
    pn_len = (size_t)(b0 & PN_LEN_MASK) + 1;
    hdr_len = pkt->pn_off + pn_len;
    if (pkt->len < hdr_len + TAG_LEN + 1) { /* RFC 9000 12.4: a packet holds a frame */
        return SR_QUIC_REASON_PACKET_SHORT;
    }
    /* The unprotected header is the additional data; it goes first in the scratch, and the
     * plaintext after it. pkt->len <= the datagram's length, which fits. */
    memcpy(ctx->plain, pkt->start, hdr_len);
    ctx->plain[0] = b0;
    for (i = 0; i < pn_len; i++) {
        ctx->plain[pkt->pn_off + i] ^= mask[1 + i];
        pn = pn << 8 | ctx->plain[pkt->pn_off + i];
    }
    pn = decode_pn(st->largest_pn, pn, pn_len);
    ar = aead(ctx, &st->keys, pn, ctx->plain, hdr_len, pkt->start + hdr_len, pkt->len - hdr_len,
              ctx->plain + hdr_len, false);
    if (ar != AEAD_OK) {
        return ar == AEAD_BAD_TAG ? SR_QUIC_REASON_DECRYPT : SR_QUIC_REASON_LIBCRYPTO;
    }
    if ((b0 & RESERVED_BITS) != 0) {
        return SR_QUIC_REASON_RESERVED_BITS;
    }
    if ((int64_t)pn > st->largest_pn) {
        st->largest_pn = (int64_t)pn;
    }
    if (st->n_initial == 0) {
        st->version = pkt->version;
        st->dcid_len = (uint8_t)pkt->dcid_len;
        memcpy(st->dcid, pkt->dcid, pkt->dcid_len);
        st->scid_len = (uint8_t)pkt->scid_len;
        memcpy(st->scid, pkt->scid, pkt->scid_len);
    }
    st->n_initial++;
    f->res->n_initial++;
    return read_frames(f, ctx->plain + hdr_len, pkt->len - hdr_len - TAG_LEN);
}

/* Every packet of the datagram, strictly for the first, leniently after it (see quic.h). */
static enum sr_quic_reason
read_datagram(struct feed *f, const uint8_t *dgram, size_t len)
{
    struct packet first;
    struct packet pkt;
    enum sr_quic_reason r;
    size_t pos = 0;

    if (len > SR_QUIC_MAX_DATAGRAM) {
        return SR_QUIC_REASON_LARGE_DATAGRAM;
    }
    r = parse_header(dgram, len, &first);
    f->res->version = first.version;
    if (r != SR_QUIC_REASON_NONE) {
        return r;
    }
    pkt = first;
    for (;;) {
        if (pkt.type == SR_QUIC_PT_INITIAL) {
            r = read_initial(f, &pkt);
            if (r != SR_QUIC_REASON_NONE) {
                return r;
            }
        } else {
            f->res->n_skipped++;
        }
        pos += pkt.len;
        if (pos == len || parse_header(dgram + pos, len - pos, &pkt) != SR_QUIC_REASON_NONE ||
            pkt.version != first.version || pkt.dcid_len != first.dcid_len ||
            memcmp(pkt.dcid, first.dcid, first.dcid_len) != 0) {
            return SR_QUIC_REASON_NONE;
        }
    }
}

/* After the datagram: what the CRYPTO stream says now. */
static enum sr_quic_reason
conclude(struct feed *f)
{
    struct sr_quic_initial *st = f->st;
    struct sr_quic_result *res = f->res;

    while (st->contig < st->max_hello && bit_get(st->have, st->contig)) {
        st->contig++;
    }
    sr_hello_parse_message(st->crypto, st->contig, &res->hello);
    if (res->hello.status == SR_HELLO_MALFORMED) {
        return SR_QUIC_REASON_HELLO;
    }
    if (st->contig >= 4) {
        st->hello_len =
            4 + ((size_t)st->crypto[1] << 16 | (size_t)st->crypto[2] << 8 | (size_t)st->crypto[3]);
        if (st->hello_len > st->max_hello) {
            return SR_QUIC_REASON_TOO_LARGE;
        }
        if (st->crypto_end > st->hello_len) {
            return SR_QUIC_REASON_CRYPTO_PAST_HELLO;
        }
    }
    switch (res->hello.status) {
    case SR_HELLO_FOUND:
        res->status = SR_QUIC_FOUND;
        break;
    case SR_HELLO_NO_SNI:
        res->status = SR_QUIC_NO_SNI;
        break;
    default: /* NEED_MORE: its <need> counts from the first gap, which means little here */
        memset(&res->hello, 0, sizeof(res->hello));
        res->status = SR_QUIC_NEED_MORE;
        break;
    }
    return SR_QUIC_REASON_NONE;
}

static enum sr_quic_status
status_for(enum sr_quic_reason r)
{
    switch (r) {
    case SR_QUIC_REASON_SHORT_HEADER:
    case SR_QUIC_REASON_TRUNCATED:
    case SR_QUIC_REASON_VERSION:
        return SR_QUIC_NOT_QUIC;
    case SR_QUIC_REASON_LIBCRYPTO:
        return SR_QUIC_ERROR;
    default:
        return SR_QUIC_MALFORMED;
    }
}

void
sr_quic_initial_init(struct sr_quic_initial *st, size_t max_hello)
{
    /* Only the bitmap needs clearing: crypto[] bytes are read only where it says so. */
    memset(st, 0, offsetof(struct sr_quic_initial, crypto));
    st->max_hello =
        max_hello == 0 || max_hello > SR_QUIC_CRYPTO_MAX ? SR_QUIC_CRYPTO_MAX : max_hello;
    st->largest_pn = -1;
}

void
sr_quic_feed(struct sr_quic_ctx *ctx, struct sr_quic_initial *st, const uint8_t *dgram, size_t len,
             struct sr_quic_result *res)
{
    struct feed f = {ctx, st, res, len, SIZE_MAX, 0};
    struct saved sv;
    enum sr_quic_reason r;
    size_t b;

    memset(res, 0, sizeof(*res));
    sv.version = st->version;
    sv.dcid_len = st->dcid_len;
    sv.scid_len = st->scid_len;
    memcpy(sv.dcid, st->dcid, sizeof(sv.dcid));
    memcpy(sv.scid, st->scid, sizeof(sv.scid));
    sv.n_initial = st->n_initial;
    sv.contig = st->contig;
    sv.hello_len = st->hello_len;
    sv.crypto_end = st->crypto_end;
    sv.largest_pn = st->largest_pn;

    r = read_datagram(&f, dgram, len);
    if (r == SR_QUIC_REASON_NONE) {
        r = conclude(&f);
    }
    /* Bits first set by this datagram: cleared from the undo log always, and from the flow
     * too if the datagram is refused. */
    for (b = f.lo / 8; f.lo < f.hi && b < (f.hi + 7) / 8; b++) {
        if (r != SR_QUIC_REASON_NONE) {
            st->have[b] &= (uint8_t)~ctx->undo[b];
        }
        ctx->undo[b] = 0;
    }
    if (r == SR_QUIC_REASON_NONE) {
        st->n_crypto_frames += res->n_crypto_frames;
        st->n_crypto_out_of_order += res->n_crypto_out_of_order;
        return;
    }
    st->version = sv.version;
    st->dcid_len = sv.dcid_len;
    st->scid_len = sv.scid_len;
    memcpy(st->dcid, sv.dcid, sizeof(sv.dcid));
    memcpy(st->scid, sv.scid, sizeof(sv.scid));
    st->n_initial = sv.n_initial;
    st->contig = sv.contig;
    st->hello_len = sv.hello_len;
    st->crypto_end = sv.crypto_end;
    st->largest_pn = sv.largest_pn;
    res->status = status_for(r);
    res->reason = r;
    if (r != SR_QUIC_REASON_HELLO) {
        memset(&res->hello, 0, sizeof(res->hello));
    }
}

bool
sr_quic_starts_initial(const uint8_t *dgram, size_t len)
{
    uint32_t version;

    if (len < 5 || (dgram[0] & LONG_HEADER) == 0) {
        return false;
    }
    version =
        (uint32_t)dgram[1] << 24 | (uint32_t)dgram[2] << 16 | (uint32_t)dgram[3] << 8 | dgram[4];
    return is_supported(version) &&
           sr_quic_packet_type(version == SR_QUIC_V2, dgram[0]) == SR_QUIC_PT_INITIAL;
}

bool
sr_quic_long_cids(const uint8_t *dgram, size_t len, struct sr_quic_cids *out)
{
    size_t off = 5;

    memset(out, 0, sizeof(*out));
    if (len < 7 || (dgram[0] & LONG_HEADER) == 0 ||
        (dgram[1] | dgram[2] | dgram[3] | dgram[4]) == 0) {
        return false;
    }
    out->dcid_len = dgram[off++];
    if (out->dcid_len > SR_QUIC_MAX_CID || len - off < out->dcid_len + 1) {
        return false;
    }
    out->dcid = dgram + off;
    off += out->dcid_len;
    out->scid_len = dgram[off++];
    if (out->scid_len > SR_QUIC_MAX_CID || len - off < out->scid_len) {
        return false;
    }
    out->scid = dgram + off;
    return true;
}

bool
sr_quic_is_short(const uint8_t *dgram, size_t len, size_t cid_len)
{
    return len > cid_len && (dgram[0] & LONG_HEADER) == 0;
}

const char *
sr_quic_status_str(enum sr_quic_status s)
{
    switch (s) {
    case SR_QUIC_NEED_MORE:
        return "need_more";
    case SR_QUIC_FOUND:
        return "found";
    case SR_QUIC_NO_SNI:
        return "no_sni";
    case SR_QUIC_NOT_QUIC:
        return "not_quic";
    case SR_QUIC_MALFORMED:
        return "malformed";
    case SR_QUIC_ERROR:
        return "error";
    }
    return "unknown";
}

const char *
sr_quic_reason_str(enum sr_quic_reason r)
{
    switch (r) {
    case SR_QUIC_REASON_NONE:
        return "none";
    case SR_QUIC_REASON_SHORT_HEADER:
        return "not a long header packet";
    case SR_QUIC_REASON_TRUNCATED:
        return "too short for a long header";
    case SR_QUIC_REASON_VERSION:
        return "unsupported QUIC version";
    case SR_QUIC_REASON_SMALL_DATAGRAM:
        return "Initial in a datagram under 1200 bytes";
    case SR_QUIC_REASON_LARGE_DATAGRAM:
        return "datagram larger than any UDP payload";
    case SR_QUIC_REASON_VERSION_NEGOTIATION:
        return "Version Negotiation packet from a client";
    case SR_QUIC_REASON_RETRY:
        return "Retry packet from a client";
    case SR_QUIC_REASON_HEADER:
        return "header field runs past the datagram";
    case SR_QUIC_REASON_CID_LENGTH:
        return "connection ID longer than 20 bytes";
    case SR_QUIC_REASON_DCID_SHORT:
        return "Initial destination connection ID shorter than 8 bytes";
    case SR_QUIC_REASON_PACKET_LENGTH:
        return "packet length runs past the datagram";
    case SR_QUIC_REASON_PACKET_SHORT:
        return "packet too short to be protected";
    case SR_QUIC_REASON_DECRYPT:
        return "decrypt failed";
    case SR_QUIC_REASON_RESERVED_BITS:
        return "reserved header bits set";
    case SR_QUIC_REASON_FRAME_TYPE:
        return "frame type not allowed in an Initial";
    case SR_QUIC_REASON_FRAME:
        return "frame runs past its packet or is badly encoded";
    case SR_QUIC_REASON_CRYPTO_CHANGED:
        return "CRYPTO data differs from data already received";
    case SR_QUIC_REASON_CRYPTO_PAST_HELLO:
        return "CRYPTO data past the end of the ClientHello";
    case SR_QUIC_REASON_TOO_LARGE:
        return "ClientHello larger than the limit";
    case SR_QUIC_REASON_HELLO:
        return "malformed ClientHello";
    case SR_QUIC_REASON_LIBCRYPTO:
        return "libcrypto failed";
    }
    return "unknown reason";
}
