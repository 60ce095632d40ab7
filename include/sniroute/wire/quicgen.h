/* SPDX-License-Identifier: MIT */
/* The QUIC Initial builder behind the Initial reader's tests and `sniroute selftest --quic`:
 * a client's first flight for a given ClientHello, in the shapes that break fragile readers:
 * the CRYPTO stream cut into frames sent out of order with PING and PADDING between them (as
 * Chrome does), overlapping, spread over several Initial packets and datagrams, coalesced
 * with a 0-RTT packet, QUIC v1 or v2; after a Retry, the same with its token. Pure like
 * sniroute/hellogen.h: caller-owned buffers, caller-chosen connection IDs, no allocation in
 * our code, no I/O, no clock; packet protection goes through libcrypto via a struct
 * sr_quic_ctx. It builds what a client sends first (and, for tests, a server's Initial) and
 * nothing else; its 0-RTT packets are shapes only (no 0-RTT keys exist here). */
#ifndef SR_QUICGEN_H
#define SR_QUICGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/hellogen.h"
#include "sniroute/wire/quic.h"

enum sr_quicgen_type {
    SR_QUICGEN_INITIAL,
    SR_QUICGEN_0RTT,
    SR_QUICGEN_HANDSHAKE,
};

/* One long header packet. */
struct sr_quicgen_packet {
    uint32_t version; /* SR_QUIC_V1 or SR_QUIC_V2 */
    enum sr_quicgen_type type;
    const uint8_t *dcid; /* 0..20 bytes each */
    size_t dcid_len;
    const uint8_t *scid;
    size_t scid_len;
    const uint8_t *token; /* Initial only; NULL/0 for none */
    size_t token_len;
    uint64_t pn;           /* the full packet number, for the nonce (RFC 9001 5.3) */
    size_t pn_len;         /* bytes of it on the wire, its low ones: 1..4 */
    uint8_t reserved_bits; /* written into byte 0's reserved bits (0x0c): 0 unless testing */
    /* Initial keys come from this connection ID, NULL: from <dcid>. A client that has heard
     * from the server sends to the server's connection ID (RFC 9000 7.2) but keeps the keys
     * of the DCID it started with, or of a Retry's (RFC 9001 5.2). */
    const uint8_t *keys_dcid;
    size_t keys_dcid_len;
    bool is_server; /* protect with the server's Initial keys (for tests of client readers) */
};

/* Write the shortest variable-length integer encoding of <v> (RFC 9000 16) to <out>.
 * Returns its length, or 0 if <v> >= 2^62 or it does not fit <cap>. */
size_t sr_quicgen_varint(uint8_t *out, size_t cap, uint64_t v);

/* Write a CRYPTO frame (type, offset, length, data) for <data>/<len> at stream offset
 * <offset>. Returns its length, or 0 if it does not fit <cap>. */
size_t sr_quicgen_crypto_frame(uint8_t *out, size_t cap, uint64_t offset, const uint8_t *data,
                               size_t len);

/* Write packet <*p> carrying the frames <payload>/<payload_len> to <out>, followed by as many
 * PADDING frames as make the packet at least <min_len> bytes long, and at least long enough to
 * be protected (RFC 9001 5.4.2). An Initial is protected with the client (or, <is_server>,
 * the server) Initial keys of its <keys_dcid>, else its DCID (RFC 9001 5); a 0-RTT or
 * Handshake packet carries the payload unprotected: a shape for
 * readers that skip it by its length. The Length field takes 2 bytes when it fits, else 4.
 * Returns the packet's length, or 0 if it does not fit <cap>, a field is out of range, or
 * libcrypto fails. */
size_t sr_quicgen_packet(struct sr_quic_ctx *ctx, const struct sr_quicgen_packet *p,
                         const uint8_t *payload, size_t payload_len, size_t min_len, uint8_t *out,
                         size_t cap);

/* How a flight carries a ClientHello. */
struct sr_quicgen_flight {
    uint32_t version;
    const uint8_t *dcid; /* 8..20 bytes (RFC 9000 7.2) */
    size_t dcid_len;
    const uint8_t *scid; /* 0..20 bytes */
    size_t scid_len;
    size_t n_frames;       /* cut the ClientHello into this many near-equal CRYPTO frames (at
                              least 1; more where a piece would not fit a packet) */
    size_t overlap;        /* each frame but the last also carries this many bytes of the next */
    uint32_t shuffle_seed; /* 0: frames in offset order; else a permutation drawn from it */
    bool ping_padding;     /* a PING and a run of PADDING before every CRYPTO frame */
    size_t packet_room;    /* most frame bytes per Initial packet; 0: as many as fit 1200 */
    size_t per_datagram;   /* Initial packets coalesced per datagram; 0: 1 */
    bool zero_rtt;         /* end the last datagram with a 0-RTT packet */
    size_t datagram_len;   /* pad each datagram to this; 0: 1200 (RFC 9000 14.1) */
    const uint8_t *token;  /* in every Initial: a Retry's token (RFC 9000 17.2.5.2); NULL/0 */
    size_t token_len;
    uint64_t first_pn; /* the first packet's number: after a Retry, packet numbers go on from
                          where they were (RFC 9000 17.2.5.3) */
};

/* Most datagrams a flight may be cut into. */
#define SR_QUICGEN_MAX_DATAGRAMS 64

/* Build the first flight carrying the handshake message <hello>/<hello_len> (a bare
 * ClientHello, as sr_hellogen_message() writes it) shaped by <*fl>, into <out>: datagram after
 * datagram, <ends[i]> the end offset of datagram i in <out>, <*n_dgrams> their count. Packet
 * numbers count from <first_pn>, one a packet (0-RTT packets have their own space and start
 * at 0). Returns the bytes written, or 0 if they do not fit <cap>, more than
 * <ends_cap> datagrams would be needed, an option is out of range, or libcrypto fails. */
size_t sr_quicgen_flight_build(struct sr_quic_ctx *ctx, const struct sr_quicgen_flight *fl,
                               const uint8_t *hello, size_t hello_len, uint8_t *out, size_t cap,
                               size_t *ends, size_t ends_cap, size_t *n_dgrams);

/* The self-test's cases: a QUIC ClientHello and the shape of the flight that carries it. */
struct sr_quicgen_case {
    const char *name;        /* "plain", "two_datagrams", ... (stable: --only and scripts) */
    const char *description; /* a few words for the report */
    uint32_t version;        /* SR_QUIC_V1 or SR_QUIC_V2 */
    bool has_pq_share;       /* as in struct sr_hellogen_opts */
    size_t target_len;
    /* The flight's shape: n_frames, shuffle_seed, ping_padding, packet_room, per_datagram,
     * zero_rtt, datagram_len; the rest is set by sr_quicgen_case_build(). */
    struct sr_quicgen_flight shape;
};

/* The cases, in report order, and their count. Static, read-only. */
extern const struct sr_quicgen_case sr_quicgen_cases[];
extern const size_t sr_quicgen_n_cases;

/* The case named <name> (NUL-terminated), or NULL. */
const struct sr_quicgen_case *sr_quicgen_case_find(const char *name);

/* What a self-test client puts in a case's flight besides the case's own shape. */
struct sr_quicgen_client {
    const char *name; /* server_name, <name_len> bytes */
    size_t name_len;
    const char *alpn; /* comma-separated; NULL: none (a QUIC server then refuses: RFC 9001 8.1) */
    const struct sr_hellogen_random *rnd;
    const uint8_t *dcid; /* the Initials' DCID, 8..20 bytes; after a Retry, the Retry's SCID */
    size_t dcid_len;
    const uint8_t *scid; /* the client's connection ID, also in the transport parameters */
    size_t scid_len;
    const uint8_t *token; /* a Retry's token, NULL/0 before one */
    size_t token_len;
    uint64_t first_pn;
};

/* Build case <c>'s flight for <*cl> into <out>, as sr_quicgen_flight_build() does:
 * <ends>/<*n_dgrams> say where each datagram ends. <*hello_len> (if not NULL) receives the
 * ClientHello's length. Returns the bytes written, or 0 if the hello cannot be built (as
 * sr_hellogen_message()) or the flight cannot (as sr_quicgen_flight_build()). */
size_t sr_quicgen_case_build(struct sr_quic_ctx *ctx, const struct sr_quicgen_case *c,
                             const struct sr_quicgen_client *cl, uint8_t *out, size_t cap,
                             size_t *ends, size_t ends_cap, size_t *n_dgrams, size_t *hello_len);

#endif
