/* SPDX-License-Identifier: MIT */
/* The reader of a QUIC server's answers: the RFC 9001 and RFC 9369 Appendix A server Initials
 * and Retry packets read to their published contents, and refused with every byte flipped,
 * truncated at every length, and for another client; server Initials built with the server's
 * keys (ServerHello in frames out of order, ACK, CONNECTION_CLOSE, a coalesced Handshake
 * packet, padding) read as built; Version Negotiation matched to its client; each refusal
 * pinned to its reason. Every datagram is read from an exact-size heap copy, for ASan. */
#include "sniroute/wire/quicanswer.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/quicgen.h"
#include "support/assert.h"

static struct sr_quic_ctx ctx;

/* The RFC examples' client: DCID 8394c8f03e515708, an empty SCID. */
static const uint8_t rfc_dcid[] = {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};
static const uint8_t rfc_server_scid[] = {0xf0, 0x67, 0xa5, 0x50, 0x2a, 0x42, 0x62, 0xb5};

/* RFC 9001 A.3 and RFC 9369 A.3: the server's Initial; A.4: a Retry with token "token". */
static const char rfc9001_initial[] =
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee";
static const char rfc9369_initial[] =
    "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698"
    "baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17"
    "f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2"
    "c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8"
    "4bed8521e2e140";
static const char rfc9001_retry[] =
    "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba";
static const char rfc9369_retry[] =
    "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6";
/* Both Initials' plaintext: ACK, then CRYPTO at offset 0 with a 90-byte ServerHello. */
static const char rfc_server_hello[] = "020000560303eefce7f7b37ba1d1632e96677825ddf739"
                                       "88cfc79825df566dc5430b9a045a1200130100002e00330024";

static size_t
unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;

    for (; s[0] != '\0' && s[1] != '\0'; s += 2) {
        unsigned v;

        ASSERT_LT(n, cap);
        ASSERT_EQ(sscanf(s, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
    }
    return n;
}

/* Read <p>/<len> from an exact-size heap copy; check what holds for every answer. */
static void
read_answer(const struct sr_quicanswer_client *cl, const uint8_t *p, size_t len,
            struct sr_quicanswer *ans)
{
    uint8_t *copy = malloc(len ? len : 1);

    ASSERT(copy != NULL);
    memcpy(copy, p, len);
    sr_quicanswer_read(&ctx, cl, copy, len, ans);
    ASSERT_EQ(ans->kind == SR_QUICANSWER_NONE, ans->reason != SR_QUICANSWER_REASON_NONE);
    ASSERT_LE(ans->hello_head_len, SR_QUICANSWER_HELLO_HEAD);
    ASSERT_LE(ans->scid_len, SR_QUIC_MAX_CID);
    if (ans->kind == SR_QUICANSWER_RETRY) {
        ASSERT(ans->token >= copy && ans->token + ans->token_len + 16 == copy + len);
        ans->token = p + (ans->token - copy); /* the view, moved to the caller's bytes */
    } else {
        ASSERT(ans->token == NULL && ans->token_len == 0);
    }
    free(copy);
}

static void
expect_none(const struct sr_quicanswer *ans, enum sr_quicanswer_reason r, const char *what)
{
    if (ans->kind != SR_QUICANSWER_NONE || ans->reason != r) {
        SR_FAIL("%s: kind %d reason %s, want none/%s", what, (int)ans->kind,
                sr_quicanswer_reason_str(ans->reason), sr_quicanswer_reason_str(r));
    }
}

/* Every one-byte change and every truncation of <p>/<len> is refused for <cl>. */
static void
check_fragile(const struct sr_quicanswer_client *cl, const uint8_t *p, size_t len)
{
    static uint8_t d[2048];
    struct sr_quicanswer ans;
    size_t i;

    ASSERT_LE(len, sizeof(d));
    memcpy(d, p, len);
    for (i = 0; i < len; i++) {
        d[i] ^= 0x01;
        read_answer(cl, d, len, &ans);
        if (ans.kind != SR_QUICANSWER_NONE) {
            SR_FAIL("byte %zu flipped: read as kind %d", i, (int)ans.kind);
        }
        d[i] ^= 0x01;
    }
    for (i = 0; i < len; i++) {
        read_answer(cl, p, i, &ans);
        if (ans.kind != SR_QUICANSWER_NONE) {
            SR_FAIL("cut to %zu bytes: read as kind %d", i, (int)ans.kind);
        }
    }
}

static void
test_rfc_vectors(void)
{
    static const struct {
        uint32_t version;
        const char *initial;
        const char *retry;
    } v[] = {{SR_QUIC_V1, rfc9001_initial, rfc9001_retry},
             {SR_QUIC_V2, rfc9369_initial, rfc9369_retry}};
    uint8_t pkt[256], hello[64];
    struct sr_quicanswer ans;
    size_t i, n, hello_len = unhex(rfc_server_hello, hello, sizeof(hello));

    for (i = 0; i < 2; i++) {
        struct sr_quicanswer_client cl = {v[i].version, rfc_dcid, sizeof(rfc_dcid), NULL, 0};
        struct sr_quicanswer_client other = cl;

        n = unhex(v[i].initial, pkt, sizeof(pkt));
        ASSERT_EQ(n, 135);
        read_answer(&cl, pkt, n, &ans);
        ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
        ASSERT_EQ(ans.version, v[i].version);
        ASSERT_EQ(ans.n_initial, 1);
        ASSERT_EQ(ans.n_handshake, 0);
        ASSERT_EQ(ans.scid_len, sizeof(rfc_server_scid));
        ASSERT(memcmp(ans.scid, rfc_server_scid, sizeof(rfc_server_scid)) == 0);
        ASSERT_EQ(ans.hello_head_len, SR_QUICANSWER_HELLO_HEAD);
        ASSERT_LE(SR_QUICANSWER_HELLO_HEAD, hello_len);
        ASSERT(memcmp(ans.hello_head, hello, SR_QUICANSWER_HELLO_HEAD) == 0);
        ASSERT(!ans.has_close);
        check_fragile(&cl, pkt, n);
        other.dcid_len = 7; /* another client's keys */
        read_answer(&other, pkt, n, &ans);
        expect_none(&ans, SR_QUICANSWER_REASON_DECRYPT, "another DCID");
        other = cl;
        other.scid = rfc_dcid; /* a client that is not the one addressed */
        other.scid_len = 4;
        read_answer(&other, pkt, n, &ans);
        expect_none(&ans, SR_QUICANSWER_REASON_DCID, "another SCID");
        other = cl;
        other.version = v[1 - i].version;
        read_answer(&other, pkt, n, &ans);
        expect_none(&ans, SR_QUICANSWER_REASON_VERSION, "another version");

        n = unhex(v[i].retry, pkt, sizeof(pkt));
        read_answer(&cl, pkt, n, &ans);
        ASSERT_EQ(ans.kind, SR_QUICANSWER_RETRY);
        ASSERT_EQ(ans.token_len, 5);
        ASSERT(memcmp(ans.token, "token", 5) == 0);
        ASSERT_EQ(ans.scid_len, sizeof(rfc_server_scid));
        ASSERT(memcmp(ans.scid, rfc_server_scid, sizeof(rfc_server_scid)) == 0);
        check_fragile(&cl, pkt, n);
        other = cl;
        other.dcid_len = 7; /* the tag covers the DCID the Retry answers */
        read_answer(&other, pkt, n, &ans);
        expect_none(&ans, SR_QUICANSWER_REASON_RETRY_TAG, "Retry for another DCID");
        other = cl;
        other.dcid = rfc_server_scid; /* a Retry may not come from our own DCID */
        other.dcid_len = sizeof(rfc_server_scid);
        read_answer(&other, pkt, n, &ans);
        expect_none(&ans, SR_QUICANSWER_REASON_RETRY_SCID, "Retry from our DCID");
    }
}

/* ---- built server answers ---------------------------------------------------------- */

static const uint8_t client_dcid[] = {0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8};
static const uint8_t client_scid[] = {0xc1, 0xc2, 0xc3, 0xc4, 0xc5};
static const uint8_t server_scid[] = {0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e};
static const struct sr_quicanswer_client client = {SR_QUIC_V1, client_dcid, sizeof(client_dcid),
                                                   client_scid, sizeof(client_scid)};

/* A server packet to our client: DCID our SCID, keys from our DCID. */
static size_t
server_packet(enum sr_quicgen_type type, const uint8_t *frames, size_t n, size_t min_len,
              uint8_t *out, size_t cap)
{
    struct sr_quicgen_packet pk;
    size_t len;

    memset(&pk, 0, sizeof(pk));
    pk.version = client.version;
    pk.type = type;
    pk.dcid = client_scid;
    pk.dcid_len = sizeof(client_scid);
    pk.scid = server_scid;
    pk.scid_len = sizeof(server_scid);
    pk.keys_dcid = client_dcid;
    pk.keys_dcid_len = sizeof(client_dcid);
    pk.is_server = true;
    pk.pn_len = 1;
    len = sr_quicgen_packet(&ctx, &pk, frames, n, min_len, out, cap);
    ASSERT_GT(len, 0);
    return len;
}

static void
test_built(void)
{
    static const uint8_t head[] = {0x02, 0x00, 0x00, 0x56, 0x03, 0x03, 1,  2,  3,  4,  5,  6,  7,
                                   8,    9,    10,   11,   12,   13,   14, 15, 16, 17, 18, 19, 20,
                                   21,   22,   23,   24,   25,   26,   27, 28, 29, 30, 31, 32};
    static const uint8_t ack[] = {0x02, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t ack_ecn[] = {0x03, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00};
    static const uint8_t close[] = {0x1c, 0x41, 0x78, 0x06, 0x07, 'n',
                                    'o',  ' ',  'A',  'L',  'P',  'N'};
    static uint8_t d[4096];
    uint8_t f[256];
    struct sr_quicanswer ans;
    struct sr_quicgen_packet pk;
    size_t n, len;

    /* ServerHello's head in three frames, last first, with an ACK with ECN and PING; then a
     * Handshake packet; then zeros. */
    n = 0;
    memcpy(f, ack_ecn, sizeof(ack_ecn));
    n += sizeof(ack_ecn);
    n += sr_quicgen_crypto_frame(f + n, sizeof(f) - n, 30, head + 30, 8);
    f[n++] = 0x01;
    n += sr_quicgen_crypto_frame(f + n, sizeof(f) - n, 0, head, 10);
    n += sr_quicgen_crypto_frame(f + n, sizeof(f) - n, 10, head + 10, 20);
    len = server_packet(SR_QUICGEN_INITIAL, f, n, 0, d, sizeof(d));
    len +=
        server_packet(SR_QUICGEN_HANDSHAKE, (const uint8_t *)"xyz", 3, 0, d + len, sizeof(d) - len);
    memset(d + len, 0, 1200 - len);
    read_answer(&client, d, 1200, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
    ASSERT_EQ(ans.n_initial, 1);
    ASSERT_EQ(ans.n_handshake, 1);
    ASSERT_EQ(ans.hello_head_len, sizeof(head));
    ASSERT(memcmp(ans.hello_head, head, sizeof(head)) == 0);
    ASSERT_EQ(ans.scid_len, sizeof(server_scid));
    ASSERT(memcmp(ans.scid, server_scid, sizeof(server_scid)) == 0);

    /* A gap: only the bytes contiguous from 0 count. */
    n = sr_quicgen_crypto_frame(f, sizeof(f), 0, head, 10);
    n += sr_quicgen_crypto_frame(f + n, sizeof(f) - n, 11, head + 11, 20);
    len = server_packet(SR_QUICGEN_INITIAL, f, n, 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
    ASSERT_EQ(ans.hello_head_len, 10);

    /* CONNECTION_CLOSE: a crypto error (0x100 + TLS alert 120), its reason phrase. */
    memcpy(f, ack, sizeof(ack));
    memcpy(f + sizeof(ack), close, sizeof(close));
    len = server_packet(SR_QUICGEN_INITIAL, f, sizeof(ack) + sizeof(close), 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
    ASSERT(ans.has_close);
    ASSERT_EQ(ans.close_error, 0x178);
    ASSERT_EQ(ans.close_frame_type, 6);
    ASSERT_EQ(ans.close_reason_len, 7);
    ASSERT(memcmp(ans.close_reason, "no ALPN", 7) == 0);
    ASSERT_EQ(ans.hello_head_len, 0);

    /* A CONNECTION_CLOSE, then a frame no Initial may carry: nothing of it is kept, whether
     * the packet comes first or after a good one. */
    memcpy(f, close, sizeof(close));
    f[sizeof(close)] = 0x1d;
    memset(f + sizeof(close) + 1, 0, 3);
    len = server_packet(SR_QUICGEN_INITIAL, f, sizeof(close) + 4, 0, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_FRAME, "close, then frame 0x1d");
    ASSERT(!ans.has_close && ans.close_error == 0 && ans.close_reason_len == 0);
    n = server_packet(SR_QUICGEN_INITIAL, ack, sizeof(ack), 0, d, sizeof(d));
    len = n + server_packet(SR_QUICGEN_INITIAL, f, sizeof(close) + 4, 0, d + n, sizeof(d) - n);
    read_answer(&client, d, len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
    ASSERT_EQ(ans.n_initial, 1);
    ASSERT(!ans.has_close);

    /* A Handshake packet alone still answers us; then a packet for someone else ends it. */
    len = server_packet(SR_QUICGEN_HANDSHAKE, f, 40, 0, d, sizeof(d));
    memcpy(d + len, d, len);
    d[len + 6] ^= 0xff; /* its DCID's first byte */
    read_answer(&client, d, 2 * len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_INITIAL);
    ASSERT_EQ(ans.n_initial, 0);
    ASSERT_EQ(ans.n_handshake, 1);

    /* Refusals, each for its reason. */
    f[0] = 0x1d; /* an application CONNECTION_CLOSE: not in an Initial (RFC 9000 12.4) */
    f[1] = f[2] = f[3] = 0;
    len = server_packet(SR_QUICGEN_INITIAL, f, 4, 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_FRAME, "frame 0x1d");
    f[0] = 0x06; /* CRYPTO longer than the packet */
    f[1] = 0;
    f[2] = 0x50;
    f[3] = 0x00;
    len = server_packet(SR_QUICGEN_INITIAL, f, 4, 0, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_FRAME, "CRYPTO past its packet");
    len = server_packet(SR_QUICGEN_0RTT, f, 4, 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_TYPE, "0-RTT");

    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V1;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = client_scid;
    pk.dcid_len = sizeof(client_scid);
    pk.keys_dcid = client_dcid;
    pk.keys_dcid_len = sizeof(client_dcid);
    pk.is_server = true;
    pk.pn_len = 2;
    pk.token = (const uint8_t *)"t";
    pk.token_len = 1;
    len = sr_quicgen_packet(&ctx, &pk, ack, sizeof(ack), 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_TOKEN, "a server Initial with a token");
    pk.token = NULL;
    pk.token_len = 0;
    pk.reserved_bits = 0x08;
    len = sr_quicgen_packet(&ctx, &pk, ack, sizeof(ack), 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_RESERVED_BITS, "reserved bits");
    pk.reserved_bits = 0;
    pk.is_server = false; /* the client's keys: not what a server protects with */
    len = sr_quicgen_packet(&ctx, &pk, ack, sizeof(ack), 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_DECRYPT, "client keys");

    /* Our own Initial, reflected: addressed to our DCID, not to us. */
    pk.dcid = client_dcid;
    pk.dcid_len = sizeof(client_dcid);
    pk.scid = client_scid;
    pk.scid_len = sizeof(client_scid);
    pk.keys_dcid = NULL;
    len = sr_quicgen_packet(&ctx, &pk, ack, sizeof(ack), 1200, d, sizeof(d));
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_DCID, "our own Initial");

    memset(d, 0, 64);
    read_answer(&client, d, 0, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_HEADER, "empty");
    d[0] = 0x41;
    read_answer(&client, d, 64, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_SHORT_HEADER, "short header");
    d[0] = 0xc0;
    read_answer(&client, d, 4, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_HEADER, "4 bytes");
    memcpy(d, "\xc0\x00\x00\x00\x01\x15", 6); /* a DCID of 21 bytes */
    read_answer(&client, d, 64, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_HEADER, "DCID of 21");
}

/* Version Negotiation: byte 0, version 0, DCID, SCID, versions. */
static size_t
vn(uint8_t *out, const uint8_t *dcid, size_t dcid_len, const uint8_t *scid, size_t scid_len,
   const uint32_t *versions, size_t n)
{
    size_t len = 0, i;

    out[len++] = 0x80 | 0x2a;
    memset(out + len, 0, 4);
    len += 4;
    out[len++] = (uint8_t)dcid_len;
    memcpy(out + len, dcid, dcid_len);
    len += dcid_len;
    out[len++] = (uint8_t)scid_len;
    memcpy(out + len, scid, scid_len);
    len += scid_len;
    for (i = 0; i < n; i++) {
        out[len++] = (uint8_t)(versions[i] >> 24);
        out[len++] = (uint8_t)(versions[i] >> 16);
        out[len++] = (uint8_t)(versions[i] >> 8);
        out[len++] = (uint8_t)versions[i];
    }
    return len;
}

static void
test_version_negotiation(void)
{
    static const uint32_t offered[] = {0x1a2a3a4a, SR_QUIC_V2, 0xff00001d};
    static uint32_t many[20];
    struct sr_quicanswer_client v2 = client;
    struct sr_quicanswer ans;
    uint8_t d[256];
    size_t len, i;

    v2.version = SR_QUIC_V2;
    len = vn(d, client_scid, sizeof(client_scid), client_dcid, sizeof(client_dcid), offered, 3);
    read_answer(&client, d, len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_VERSION_NEGOTIATION);
    ASSERT_EQ(ans.version, 0);
    ASSERT_EQ(ans.n_versions, 3);
    ASSERT_EQ(ans.versions[1], SR_QUIC_V2);
    read_answer(&v2, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_VN_OURS, "offers v2 to a v2 client");
    ASSERT_EQ(ans.n_versions, 0);
    read_answer(&client, d, len - 1, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_HEADER, "a version cut short");
    read_answer(&client, d, len - 12, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_HEADER, "no version");
    len = vn(d, client_dcid, sizeof(client_dcid), client_scid, sizeof(client_scid), offered, 3);
    read_answer(&client, d, len, &ans);
    expect_none(&ans, SR_QUICANSWER_REASON_VN_ECHO, "IDs the wrong way round");
    for (i = 0; i < 20; i++) {
        many[i] = 0x0a0a0a0a + (uint32_t)i;
    }
    len = vn(d, client_scid, sizeof(client_scid), client_dcid, sizeof(client_dcid), many, 20);
    read_answer(&client, d, len, &ans);
    ASSERT_EQ(ans.kind, SR_QUICANSWER_VERSION_NEGOTIATION);
    ASSERT_EQ(ans.n_versions, SR_QUICANSWER_MAX_VERSIONS);
    ASSERT_EQ(ans.versions[15], 0x0a0a0a0a + 15);
}

int
main(void)
{
    int r;

    ASSERT(sr_quic_ctx_init(&ctx));
    for (r = SR_QUICANSWER_REASON_NONE; r <= SR_QUICANSWER_REASON_VN_OURS; r++) {
        ASSERT(strcmp(sr_quicanswer_reason_str((enum sr_quicanswer_reason)r), "unknown reason") !=
               0);
    }
    test_rfc_vectors();
    test_built();
    test_version_negotiation();
    sr_quic_ctx_fini(&ctx);
    printf("test_quicanswer: ok\n");
    return 0;
}
