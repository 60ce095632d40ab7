/* SPDX-License-Identifier: MIT */
/* ClientHello builder for `sniroute selftest`: writes the bytes a TLS 1.3 client sends first,
 * with caller-supplied randomness, then frames and cuts them the ways the cases name. It
 * knows no sockets and no cryptography: key shares are random bytes of the right length. */
#include "sniroute/wire/hellogen.h"

#include <string.h>

#define TLS_RECORD_HEADER   5
#define TLS_RECORD_MAX      16384 /* 2^14, RFC 8446 5.1 */
#define TLS_HS_HEADER       4
#define TLS_HS_CLIENT_HELLO 1
#define TLS_HS_MAX          0xffffff /* a 24-bit length */

#define EXT_SERVER_NAME            0
#define EXT_SUPPORTED_GROUPS       10
#define EXT_EC_POINT_FORMATS       11
#define EXT_SIGNATURE_ALGORITHMS   13
#define EXT_ALPN                   16
#define EXT_PADDING                21
#define EXT_EXTENDED_MASTER_SECRET 23
#define EXT_SUPPORTED_VERSIONS     43
#define EXT_PSK_KEY_EXCHANGE_MODES 45
#define EXT_KEY_SHARE              51
#define EXT_RENEGOTIATION_INFO     0xff01

/* QUIC transport parameters a client sends (RFC 9000 18.2). */
#define TP_MAX_IDLE_TIMEOUT                 0x01
#define TP_MAX_UDP_PAYLOAD_SIZE             0x03
#define TP_INITIAL_MAX_DATA                 0x04
#define TP_INITIAL_MAX_STREAM_DATA_BIDI_LOC 0x05
#define TP_INITIAL_MAX_STREAM_DATA_BIDI_REM 0x06
#define TP_INITIAL_MAX_STREAM_DATA_UNI      0x07
#define TP_INITIAL_MAX_STREAMS_BIDI         0x08
#define TP_INITIAL_MAX_STREAMS_UNI          0x09
#define TP_INITIAL_SOURCE_CONNECTION_ID     0x0f
#define QUIC_MAX_CID                        20

/* What current browsers offer, so that any server finds something it takes: the three TLS
 * 1.3 suites (all a QUIC hello offers), then ECDHE suites for a TLS 1.2-only server. */
#define N_TLS13_SUITES 3
static const uint16_t cipher_suites[] = {
    0x1301, 0x1302, 0x1303, /* TLS_AES_128_GCM_SHA256, AES_256_GCM_SHA384, CHACHA20_POLY1305 */
    0xc02b, 0xc02f, 0xc02c, 0xc030, /* ECDHE-{ECDSA,RSA}-AES{128,256}-GCM */
    0xcca9, 0xcca8,                 /* ECDHE-{ECDSA,RSA}-CHACHA20-POLY1305 */
};

/* ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256, ecdsa_secp384r1_sha384,
 * rsa_pss_rsae_sha384, rsa_pkcs1_sha384, rsa_pss_rsae_sha512, rsa_pkcs1_sha512, ed25519:
 * a server picks its certificate's algorithm from this list before it sends ServerHello, so
 * a missing one would look like a routing failure (alert 40). */
static const uint16_t signature_algorithms[] = {
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807,
};

/* secp256r1 and secp384r1 follow x25519 so that a server without x25519 answers with a
 * HelloRetryRequest, which still proves the hello arrived whole. */
static const uint16_t groups[] = {SR_HELLOGEN_GROUP_X25519, 0x0017, 0x0018};

/* A write cursor that stops, and stays stopped, at the first byte that would not fit. */
struct wr {
    uint8_t *out;
    size_t len;
    size_t cap;
    bool failed;
};

static void
put(struct wr *w, const void *p, size_t n)
{
    if (w->failed || w->cap - w->len < n) {
        w->failed = true;
        return;
    }
    if (n > 0) {
        memcpy(w->out + w->len, p, n);
    }
    w->len += n;
}

static void
put8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;

    put(w, &b, 1);
}

static void
put16(struct wr *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

    put(w, b, 2);
}

static void
put16s(struct wr *w, const uint16_t *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        put16(w, v[i]);
    }
}

/* A length-prefixed block: open() reserves <width> bytes and returns where they are;
 * close() fills them with the bytes written since. A block over its width's range fails the
 * writer. */
static size_t
block_open(struct wr *w, size_t width)
{
    size_t at = w->len;
    static const uint8_t zero[3];

    put(w, zero, width);
    return at;
}

static void
block_close(struct wr *w, size_t at, size_t width)
{
    size_t n, i;

    if (w->failed) {
        return;
    }
    n = w->len - at - width;
    if (n >> (8 * width) != 0) {
        w->failed = true;
        return;
    }
    for (i = 0; i < width; i++) {
        w->out[at + i] = (uint8_t)(n >> (8 * (width - 1 - i)));
    }
}

static size_t
ext_open(struct wr *w, unsigned type)
{
    put16(w, type);
    return block_open(w, 2);
}

/* A QUIC variable-length integer (RFC 9000 16), shortest form; <v> < 2^30 here. */
static void
put_varint(struct wr *w, uint32_t v)
{
    if (v < 64) {
        put8(w, v);
    } else if (v < 16384) {
        put16(w, 0x4000 | v);
    } else {
        put16(w, 0x8000 | v >> 16);
        put16(w, v & 0xffff);
    }
}

/* One transport parameter whose value is a variable-length integer. */
static void
put_tp_int(struct wr *w, unsigned id, uint32_t v)
{
    put_varint(w, id);
    put_varint(w, v < 64 ? 1 : v < 16384 ? 2 : 4);
    put_varint(w, v);
}

/* quic_transport_parameters (RFC 9001 8.2) with what a browser-like client offers: values
 * about curl's and Chrome's, so that a server would go on with the handshake as with them.
 * initial_source_connection_id is the one a server must check (RFC 9000 7.3). */
static void
put_transport_parameters(struct wr *w, const uint8_t *scid, size_t scid_len)
{
    put_tp_int(w, TP_MAX_IDLE_TIMEOUT, 30000); /* milliseconds */
    put_tp_int(w, TP_MAX_UDP_PAYLOAD_SIZE, 1472);
    put_tp_int(w, TP_INITIAL_MAX_DATA, 15 << 20);
    put_tp_int(w, TP_INITIAL_MAX_STREAM_DATA_BIDI_LOC, 6 << 20);
    put_tp_int(w, TP_INITIAL_MAX_STREAM_DATA_BIDI_REM, 6 << 20);
    put_tp_int(w, TP_INITIAL_MAX_STREAM_DATA_UNI, 6 << 20);
    put_tp_int(w, TP_INITIAL_MAX_STREAMS_BIDI, 100);
    put_tp_int(w, TP_INITIAL_MAX_STREAMS_UNI, 103);
    put_varint(w, TP_INITIAL_SOURCE_CONNECTION_ID);
    put_varint(w, (uint32_t)scid_len);
    put(w, scid, scid_len);
}

/* ALPN protocol_name_list from "a,b,c"; false if a name is empty or over 255 bytes. */
static bool
put_alpn(struct wr *w, const char *list)
{
    const char *p = list;
    size_t at = block_open(w, 2);

    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);

        if (n == 0 || n > 255) {
            return false;
        }
        put8(w, (unsigned)n);
        put(w, p, n);
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    block_close(w, at, 2);
    return true;
}

size_t
sr_hellogen_message(uint8_t *out, size_t cap, const struct sr_hellogen_opts *opts)
{
    struct wr w = {out, 0, cap, false};
    size_t hs, exts, ext, inner, pad;
    const struct sr_hellogen_random *rnd = opts->rnd;
    bool quic = opts->is_quic;
    size_t n_suites = quic ? N_TLS13_SUITES : sizeof(cipher_suites) / sizeof(cipher_suites[0]);

    if (opts->name_len == 0 || opts->name_len > 255 ||
        (quic && opts->quic_scid_len > QUIC_MAX_CID)) {
        return 0;
    }
    put8(&w, TLS_HS_CLIENT_HELLO);
    hs = block_open(&w, 3);
    put16(&w, 0x0303); /* legacy_version: TLS 1.2, RFC 8446 4.1.2 */
    put(&w, rnd->random, sizeof(rnd->random));
    /* QUIC has no middlebox compatibility mode: the session ID stays empty (RFC 9001 8.4). */
    put8(&w, quic ? 0 : sizeof(rnd->session_id));
    put(&w, rnd->session_id, quic ? 0 : sizeof(rnd->session_id));
    put16(&w, (unsigned)(2 * n_suites));
    put16s(&w, cipher_suites, n_suites);
    put8(&w, 1);
    put8(&w, 0); /* legacy_compression_methods: null only */
    exts = block_open(&w, 2);

    ext = ext_open(&w, EXT_SERVER_NAME); /* RFC 6066 3 */
    inner = block_open(&w, 2);
    put8(&w, 0); /* host_name */
    put16(&w, (unsigned)opts->name_len);
    put(&w, opts->name, opts->name_len);
    block_close(&w, inner, 2);
    block_close(&w, ext, 2);

    /* A server must accept key shares only for groups the client lists here (RFC 8446
     * 4.2.8), so the PQ group is listed before it is offered. */
    ext = ext_open(&w, EXT_SUPPORTED_GROUPS);
    inner = block_open(&w, 2);
    if (opts->has_pq_share) {
        put16(&w, SR_HELLOGEN_GROUP_X25519MLKEM768);
    }
    put16s(&w, groups, sizeof(groups) / sizeof(groups[0]));
    block_close(&w, inner, 2);
    block_close(&w, ext, 2);

    if (!quic) {
        ext = ext_open(&w, EXT_EC_POINT_FORMATS);
        put8(&w, 1);
        put8(&w, 0); /* uncompressed */
        block_close(&w, ext, 2);
    }

    ext = ext_open(&w, EXT_SIGNATURE_ALGORITHMS);
    put16(&w, sizeof(signature_algorithms));
    put16s(&w, signature_algorithms,
           sizeof(signature_algorithms) / sizeof(signature_algorithms[0]));
    block_close(&w, ext, 2);

    ext = ext_open(&w, EXT_SUPPORTED_VERSIONS);
    put8(&w, quic ? 2 : 4);
    put16(&w, 0x0304);
    if (!quic) {
        put16(&w, 0x0303);
    }
    block_close(&w, ext, 2);

    ext = ext_open(&w, EXT_PSK_KEY_EXCHANGE_MODES);
    put8(&w, 1);
    put8(&w, 1); /* psk_dhe_ke */
    block_close(&w, ext, 2);

    /* A server that does not know X25519MLKEM768 skips its share and takes x25519's. */
    ext = ext_open(&w, EXT_KEY_SHARE);
    inner = block_open(&w, 2);
    if (opts->has_pq_share) {
        put16(&w, SR_HELLOGEN_GROUP_X25519MLKEM768);
        put16(&w, sizeof(rnd->mlkem));
        put(&w, rnd->mlkem, sizeof(rnd->mlkem));
    }
    put16(&w, SR_HELLOGEN_GROUP_X25519);
    put16(&w, sizeof(rnd->x25519));
    put(&w, rnd->x25519, sizeof(rnd->x25519));
    block_close(&w, inner, 2);
    block_close(&w, ext, 2);

    if (opts->alpn != NULL) {
        ext = ext_open(&w, EXT_ALPN);
        if (!put_alpn(&w, opts->alpn)) {
            return 0;
        }
        block_close(&w, ext, 2);
    }

    if (quic) {
        ext = ext_open(&w, SR_HELLOGEN_EXT_QUIC_TRANSPORT_PARAMETERS);
        put_transport_parameters(&w, opts->quic_scid, opts->quic_scid_len);
        block_close(&w, ext, 2);
    } else {
        ext = ext_open(&w, EXT_EXTENDED_MASTER_SECRET);
        block_close(&w, ext, 2);
        ext = ext_open(&w, EXT_RENEGOTIATION_INFO);
        put8(&w, 0);
        block_close(&w, ext, 2);
    }

    /* Padding last, its length chosen so the message ends at <target_len>. */
    if (!w.failed && opts->target_len > w.len) {
        pad = opts->target_len - w.len >= 4 ? opts->target_len - w.len - 4 : 0;
        if (pad > TLS_HS_MAX) {
            return 0;
        }
        ext = ext_open(&w, EXT_PADDING);
        while (pad > 0 && !w.failed) {
            static const uint8_t zeros[256];
            size_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);

            put(&w, zeros, n);
            pad -= n;
        }
        block_close(&w, ext, 2);
    }

    block_close(&w, exts, 2);
    block_close(&w, hs, 3);
    return w.failed ? 0 : w.len;
}

size_t
sr_hellogen_frame(uint8_t *out, size_t cap, const uint8_t *msg, size_t msg_len, size_t n_records)
{
    struct wr w = {out, 0, cap, false};
    size_t i, at = 0;
    bool full;

    if (n_records == 0 || n_records > msg_len) {
        return 0;
    }
    full = msg_len > n_records * TLS_RECORD_MAX;
    if (full) {
        n_records = (msg_len + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX;
    }
    for (i = 0; i < n_records; i++) {
        /* Full records as a client's TLS stack sends them when it must; else near-equal
         * ones, the first (msg_len % n_records) one byte longer. */
        size_t n = full ? (msg_len - at < TLS_RECORD_MAX ? msg_len - at : TLS_RECORD_MAX)
                        : msg_len / n_records + (i < msg_len % n_records ? 1 : 0);

        put8(&w, 22);      /* handshake */
        put16(&w, 0x0301); /* legacy_record_version of a first flight */
        put16(&w, (unsigned)n);
        put(&w, msg + at, n);
        at += n;
    }
    return w.failed ? 0 : w.len;
}

/* Report order: the gentle cases first, so a broken path fails where it starts breaking. */
const struct sr_hellogen_case sr_hellogen_cases[] = {
    {.name = "plain", .description = "one record, one write", .n_records = 1},
    {.name = "bytewise",
     .description = "one byte per TCP write",
     .n_records = 1,
     .write_max = 1,
     .pause_ms = 1},
    {.name = "records",
     .description = "five TLS records, one write each",
     .n_records = 5,
     .cut_records = true,
     .pause_ms = 10},
    {.name = "header_split",
     .description = "record header in two writes, then the body",
     .n_records = 1,
     .cuts = {3, TLS_RECORD_HEADER},
     .pause_ms = 50},
    {.name = "slow",
     .description = "three writes, a second apart",
     .n_records = 1,
     .n_even_cuts = 3,
     .pause_ms = 1000},
    /* About what a browser with ML-KEM sends: more than one 1460-byte TCP segment. */
    {.name = "pq",
     .description = "X25519MLKEM768 key share, 1.9 KB",
     .has_pq_share = true,
     .target_len = 1900 - TLS_RECORD_HEADER,
     .n_records = 1},
    /* A handshake message over 2^14 bytes cannot fit one record. */
    {.name = "large",
     .description = "17 KB hello in two records",
     .target_len = 17000,
     .n_records = 1},
};

const size_t sr_hellogen_n_cases = sizeof(sr_hellogen_cases) / sizeof(sr_hellogen_cases[0]);

const struct sr_hellogen_case *
sr_hellogen_case_find(const char *name)
{
    size_t i;

    for (i = 0; i < sr_hellogen_n_cases; i++) {
        if (strcmp(sr_hellogen_cases[i].name, name) == 0) {
            return &sr_hellogen_cases[i];
        }
    }
    return NULL;
}

/* Insert <at> into the sorted set <cuts>/<*n> (0 and values >= <len> are not cuts). */
static bool
add_cut(size_t *cuts, size_t *n, size_t cap, size_t at, size_t len)
{
    size_t i, j;

    if (at == 0 || at >= len) {
        return true;
    }
    for (i = 0; i < *n && cuts[i] < at; i++) {
    }
    if (i < *n && cuts[i] == at) {
        return true;
    }
    if (*n == cap) {
        return false;
    }
    for (j = *n; j > i; j--) {
        cuts[j] = cuts[j - 1];
    }
    cuts[i] = at;
    (*n)++;
    return true;
}

size_t
sr_hellogen_case_build(const struct sr_hellogen_case *c, const char *name, size_t name_len,
                       const char *alpn, const struct sr_hellogen_random *rnd, uint8_t *out,
                       size_t cap, size_t *ends, size_t ends_cap, size_t *n_ends)
{
    static const size_t max_cuts = 64;
    uint8_t msg[SR_HELLOGEN_MAX_LEN];
    struct sr_hellogen_opts o = {.name = name,
                                 .name_len = name_len,
                                 .alpn = alpn,
                                 .has_pq_share = c->has_pq_share,
                                 .target_len = c->target_len,
                                 .rnd = rnd};
    size_t cuts[64];
    size_t msg_len, len, n_cuts = 0, at, i, from;

    *n_ends = 0;
    msg_len = sr_hellogen_message(msg, sizeof(msg), &o);
    if (msg_len == 0) {
        return 0;
    }
    len = sr_hellogen_frame(out, cap, msg, msg_len, c->n_records);
    if (len == 0) {
        return 0;
    }
    for (i = 0; i < SR_HELLOGEN_MAX_CUTS && c->cuts[i] != 0; i++) {
        if (!add_cut(cuts, &n_cuts, max_cuts, c->cuts[i], len)) {
            return 0;
        }
    }
    if (c->cut_records) {
        for (at = 0; at < len; at += TLS_RECORD_HEADER + ((size_t)out[at + 3] << 8 | out[at + 4])) {
            if (!add_cut(cuts, &n_cuts, max_cuts, at, len)) {
                return 0;
            }
        }
    }
    for (i = 1; i < c->n_even_cuts; i++) {
        if (!add_cut(cuts, &n_cuts, max_cuts, len * i / c->n_even_cuts, len)) {
            return 0;
        }
    }
    from = 0;
    for (i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;

        while (from < to) {
            size_t n = c->write_max != 0 && to - from > c->write_max ? c->write_max : to - from;

            if (*n_ends == ends_cap) {
                *n_ends = 0;
                return 0;
            }
            from += n;
            ends[(*n_ends)++] = from;
        }
    }
    return len;
}
