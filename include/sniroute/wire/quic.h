/* SPDX-License-Identifier: MIT */
/* The QUIC Initial reader: from the datagrams a client sends first, find its TLS ClientHello
 * and say where the connection wants to go, like sniroute/hello.h does for TCP. QUIC v1
 * (RFC 9000, RFC 9001) and v2 (RFC 9369). It removes the Initial packets' protection, which
 * anyone can (the keys come from the client's Destination Connection ID and a published
 * salt), reassembles the CRYPTO stream and hands the ClientHello to sr_hello_parse_message().
 * It is not a QUIC endpoint: it sends nothing, acknowledges nothing, never looks inside 0-RTT,
 * Handshake or 1-RTT packets, and never modifies a datagram. Crypto is OpenSSL's libcrypto.
 *
 * Memory: no allocation in our code. The caller owns two things: a struct sr_quic_ctx per
 * thread (libcrypto's contexts, created once by sr_quic_ctx_init(), where libcrypto allocates;
 * and scratch space for one packet's plaintext), and a struct sr_quic_initial per client flow
 * (the CRYPTO reassembly buffer). The per-datagram path creates no libcrypto context and,
 * once a flow's keys are derived, libcrypto allocates nothing either; deriving the keys for a
 * new Destination Connection ID (once per flow, as a rule) costs libcrypto's HKDF some 60
 * small allocations inside it; what it keeps lives in the context until sr_quic_ctx_fini(). */
#ifndef SR_QUIC_H
#define SR_QUIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/hello.h"

#define SR_QUIC_V1 0x00000001u /* RFC 9000 */
#define SR_QUIC_V2 0x6b3343cfu /* RFC 9369 */

/* RFC 9000 14.1: a datagram carrying a client's Initial is at least this long. */
#define SR_QUIC_MIN_INITIAL_DATAGRAM 1200

/* The largest UDP payload: IPv4's 65535 less its headers; IPv6 without jumbograms fits too. */
#define SR_QUIC_MAX_DATAGRAM 65527

/* Connection IDs in v1 and v2 long headers (RFC 9000 17.2). */
#define SR_QUIC_MAX_CID 20
/* RFC 9000 7.2: a client's first Destination Connection ID is at least 8 bytes. */
#define SR_QUIC_MIN_INITIAL_DCID 8

/* The CRYPTO stream is reassembled into a buffer of this size: the largest ClientHello read
 * (handshake header included). Real ones are 0.3 to 2 KB (Chrome with a post-quantum key
 * share about 1.8 KB); sniroute's TCP peek buffer defaults to the same 16 KiB. */
#define SR_QUIC_CRYPTO_MAX 16384

enum sr_quic_status {
    SR_QUIC_NEED_MORE, /* the datagram was good; the ClientHello is not complete yet */
    SR_QUIC_FOUND,     /* the ClientHello is complete and valid, with one host_name */
    SR_QUIC_NO_SNI,    /* the ClientHello is complete and valid, without server_name */
    SR_QUIC_NOT_QUIC,  /* the datagram does not start a QUIC v1/v2 connection; <reason> */
    SR_QUIC_MALFORMED, /* starts like QUIC v1/v2 but breaks a rule; <reason> says which */
    SR_QUIC_ERROR,     /* libcrypto failed (out of memory): nobody's fault, drop the datagram */
};

enum sr_quic_reason {
    SR_QUIC_REASON_NONE = 0,
    /* NOT_QUIC */
    SR_QUIC_REASON_SHORT_HEADER, /* the first packet has no long header (byte 0 < 0x80) */
    SR_QUIC_REASON_TRUNCATED,    /* shorter than a long header's version field */
    SR_QUIC_REASON_VERSION,      /* a version other than v1 and v2; <version> says which */
    /* MALFORMED: datagram and packet headers */
    SR_QUIC_REASON_SMALL_DATAGRAM,      /* an Initial in a datagram under 1200 bytes (14.1) */
    SR_QUIC_REASON_LARGE_DATAGRAM,      /* over SR_QUIC_MAX_DATAGRAM: no UDP payload is */
    SR_QUIC_REASON_VERSION_NEGOTIATION, /* version 0: only servers send those */
    SR_QUIC_REASON_RETRY,               /* a Retry packet: only servers send those */
    SR_QUIC_REASON_HEADER,              /* a header field runs past the datagram */
    SR_QUIC_REASON_CID_LENGTH,          /* a connection ID over 20 bytes */
    SR_QUIC_REASON_DCID_SHORT,          /* an Initial's Destination CID under 8 bytes */
    SR_QUIC_REASON_PACKET_LENGTH,       /* a packet's Length runs past the datagram */
    SR_QUIC_REASON_PACKET_SHORT,        /* too short for header protection or for a frame */
    SR_QUIC_REASON_DECRYPT,             /* the AEAD tag does not verify */
    SR_QUIC_REASON_RESERVED_BITS,       /* reserved header bits set after unprotecting */
    /* MALFORMED: frames and the CRYPTO stream */
    SR_QUIC_REASON_FRAME_TYPE,        /* a frame an Initial may not carry (RFC 9000 12.4) */
    SR_QUIC_REASON_FRAME,             /* a frame runs past its packet or is badly encoded */
    SR_QUIC_REASON_CRYPTO_CHANGED,    /* CRYPTO bytes differ from those already received */
    SR_QUIC_REASON_CRYPTO_PAST_HELLO, /* CRYPTO data after the end of the ClientHello */
    SR_QUIC_REASON_TOO_LARGE,         /* the ClientHello would not fit <max_hello> */
    SR_QUIC_REASON_HELLO,             /* the ClientHello is malformed: see hello.reason */
    /* ERROR */
    SR_QUIC_REASON_LIBCRYPTO, /* a libcrypto call failed */
};

/* The Initial packet protection keys of one direction (RFC 9001 5.1, 5.2, 5.4). */
struct sr_quic_keys {
    uint8_t key[16]; /* AEAD_AES_128_GCM */
    uint8_t iv[12];
    uint8_t hp[16]; /* AES-128-ECB header protection */
};

/* Per thread: libcrypto's algorithms and contexts, reused for every packet, and room for one
 * packet's plaintext. Private; caller-owned; not shared between threads. */
struct sr_quic_ctx {
    struct evp_cipher_st *gcm; /* fetched once: AES-128-GCM */
    struct evp_cipher_st *ecb; /* AES-128-ECB */
    struct evp_kdf_st *hkdf;
    struct evp_cipher_ctx_st *aead_ctx;
    struct evp_cipher_ctx_st *hp_ctx;
    struct evp_kdf_ctx_st *kdf_ctx;
    uint8_t undo[SR_QUIC_CRYPTO_MAX / 8]; /* CRYPTO bytes first received in this datagram */
    uint8_t plain[SR_QUIC_MAX_DATAGRAM];
};

/* Per client flow: what the Initial packets so far carried. Fields marked "read-only" may be
 * read by the caller after a feed; the rest is private. */
struct sr_quic_initial {
    size_t max_hello; /* read-only: the ClientHello size limit given to _init */
    /* read-only: from the first Initial accepted (version 0 until then) */
    uint32_t version;
    uint8_t dcid_len;
    uint8_t scid_len;
    uint8_t dcid[SR_QUIC_MAX_CID]; /* the client's original Destination Connection ID */
    uint8_t scid[SR_QUIC_MAX_CID];
    unsigned n_initial; /* read-only: Initial packets accepted so far */
    size_t contig;      /* read-only: CRYPTO bytes received without a gap from offset 0 */
    size_t hello_len;   /* read-only: ClientHello size, handshake header included; 0 until the
                           header is in */
    /* read-only: CRYPTO frames with data accepted so far, and those of them that start below
     * the end of the data already received (sent out of order, or again): a reader that
     * wants the stream in order would have had to wait, or ask, for each of those. */
    unsigned n_crypto_frames;
    unsigned n_crypto_out_of_order;
    /* private */
    size_t crypto_end;  /* highest CRYPTO offset + length received */
    int64_t largest_pn; /* of the Initials accepted, for packet number recovery; -1: none */
    bool has_keys;      /* cache of the keys for one (version, DCID) */
    uint32_t keys_version;
    uint8_t keys_dcid_len;
    uint8_t keys_dcid[SR_QUIC_MAX_CID];
    struct sr_quic_keys keys;
    uint8_t have[SR_QUIC_CRYPTO_MAX / 8]; /* which CRYPTO bytes arrived */
    uint8_t crypto[SR_QUIC_CRYPTO_MAX];
};

struct sr_quic_result {
    enum sr_quic_status status;
    enum sr_quic_reason reason; /* NONE unless NOT_QUIC, MALFORMED or ERROR */
    /* FOUND, NO_SNI: what sr_hello_parse_message() said about the reassembled ClientHello,
     * its views pointing into the flow's struct sr_quic_initial. MALFORMED with reason HELLO:
     * hello.status is MALFORMED and hello.reason (and hello.name_error) say why. */
    struct sr_hello_result hello;
    uint32_t version;   /* the first packet's version field, if it has one (NOT_QUIC VERSION
                           names the version a Version Negotiation reply would refuse) */
    unsigned n_initial; /* Initial packets read from this datagram */
    unsigned n_skipped; /* 0-RTT and Handshake packets in it, skipped by their length */
    bool has_close;     /* an Initial in it carried CONNECTION_CLOSE: the client gave up */
    /* CRYPTO frames with data in this datagram's Initials, and those of them out of order:
     * as in struct sr_quic_initial, judged against all the flow received before them */
    unsigned n_crypto_frames;
    unsigned n_crypto_out_of_order;
};

/* Fetch the algorithms and create the contexts in <*ctx>. Returns false if libcrypto cannot
 * provide AES-128-GCM, AES-128-ECB or HKDF (or runs out of memory); <*ctx> then needs no
 * _fini. */
bool sr_quic_ctx_init(struct sr_quic_ctx *ctx);

/* Free what sr_quic_ctx_init() created. */
void sr_quic_ctx_fini(struct sr_quic_ctx *ctx);

/* Start a flow: nothing received. <max_hello> caps the ClientHello size (handshake header
 * included); 0 or anything over SR_QUIC_CRYPTO_MAX means SR_QUIC_CRYPTO_MAX. No _fini:
 * the struct holds no resources. */
void sr_quic_initial_init(struct sr_quic_initial *st, size_t max_hello);

/* Read one datagram <dgram>/<len> a client sent, as received (every packet in it), add what
 * its Initial packets carry to the flow <*st>, and fill <*res> with what the flow's ClientHello
 * says so far. Call it for each datagram of the flow, in the order they arrive, until it says
 * something other than NEED_MORE; once FOUND or NO_SNI, the flow is decided.
 *
 * Packets: the first must be a long header of v1 or v2 (else NOT_QUIC). Initial packets are
 * unprotected with keys derived from their own Destination Connection ID and version (so a
 * second flight with a new DCID, after a Retry, reads as well), 0-RTT and Handshake packets
 * are skipped by their Length field. A packet after the first ends the reading of the
 * datagram, without complaint, when it is not a long header of the first packet's version and
 * DCID, or its header does not parse: RFC 9000 12.2 lets a client coalesce Initials with junk
 * (zeros, typically) and tells receivers to ignore packets with another DCID. An Initial in a
 * datagram under 1200 bytes is MALFORMED (SMALL_DATAGRAM): RFC 9000 14.1 has servers drop it.
 * Frames in an Initial: PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (RFC 9000 12.4), each
 * checked against its packet. CRYPTO data is placed by offset, in any order, duplicated or
 * overlapping (overlaps must carry the same bytes), across packets and datagrams, up to
 * <st->max_hello>; data past the ClientHello's end is MALFORMED.
 *
 * A datagram is taken whole or not at all: on NOT_QUIC, MALFORMED or ERROR, <*st> is as it
 * was before the call, so a caller may drop the datagram and keep the flow (as a QUIC server
 * drops a packet it cannot decrypt) or end the flow. NOT_QUIC on a flow that already has
 * Initial data says only that this datagram starts nothing. On NEED_MORE the datagram was
 * good (it may have carried no Initial: a 0-RTT packet that overtook its Initial).
 * <*ctx> is scratch for the duration of the call. Views in <res->hello> point into <*st> and
 * live until the next sr_quic_feed() or sr_quic_initial_init() on it. */
void sr_quic_feed(struct sr_quic_ctx *ctx, struct sr_quic_initial *st, const uint8_t *dgram,
                  size_t len, struct sr_quic_result *res);

/* Derive the Initial keys of <version> (SR_QUIC_V1 or SR_QUIC_V2) for the Destination
 * Connection ID <dcid>/<dcid_len> (0..20 bytes): the client's keys, or the server's if
 * <is_server>. Returns false for another version or if libcrypto fails. */
bool sr_quic_initial_keys(struct sr_quic_ctx *ctx, uint32_t version, const uint8_t *dcid,
                          size_t dcid_len, bool is_server, struct sr_quic_keys *keys);

/* Whether <dgram>/<len> begins with the long header of a v1 or v2 Initial packet: the first
 * five bytes only, no crypto. A receiver's cheap first look, before it spends anything on a
 * datagram from an unknown client (sr_quic_feed() still decides). */
bool sr_quic_starts_initial(const uint8_t *dgram, size_t len);

/* The connection IDs a long header packet shows in clear (RFC 9000 17.2): views into the
 * datagram. */
struct sr_quic_cids {
    const uint8_t *dcid;
    size_t dcid_len;
    const uint8_t *scid;
    size_t scid_len;
};

/* Read the connection IDs of the long header packet <dgram>/<len> begins with, of any
 * version but 0 (Version Negotiation, whose IDs may be longer). False if it begins with no
 * such packet: a short header, too short, or an ID over SR_QUIC_MAX_CID bytes. No crypto:
 * these bytes are not protected. */
bool sr_quic_long_cids(const uint8_t *dgram, size_t len, struct sr_quic_cids *out);

/* Whether <dgram>/<len> begins with a short header packet (RFC 9000 17.3: form bit 0; the
 * fixed bit is not checked, since RFC 9287 lets a peer grease it, and ngtcp2 does) long
 * enough to hold a Destination Connection ID of <cid_len> bytes after its first byte (where
 * that ID is: the receiver knows its length, the packet does not say). */
bool sr_quic_is_short(const uint8_t *dgram, size_t len, size_t cid_len);

/* "need_more", "found", "no_sni", "not_quic", "malformed", "error": for logs and metrics. */
const char *sr_quic_status_str(enum sr_quic_status s);

/* A short static English phrase for <r>, e.g. "decrypt failed". */
const char *sr_quic_reason_str(enum sr_quic_reason r);

/* For src/wire/quicgen.c and quicanswer.c only: protect and unprotect with <keys> through
 * <ctx>. sr__quic_hp_mask() writes the 5-byte header protection mask for the 16-byte
 * <sample> (RFC 9001 5.4.3). sr__quic_aead() seals (<seal>) or opens <in>/<in_len> with the
 * nonce for packet number <pn> and the additional data <aad>/<aad_len>, writing to <out>:
 * sealing appends the 16-byte tag, opening expects it at the end of <in>. Both return false
 * if libcrypto fails or, opening, if the tag does not verify. */
bool sr__quic_hp_mask(struct sr_quic_ctx *ctx, const uint8_t hp[16], const uint8_t *sample,
                      uint8_t mask[5]);
bool sr__quic_aead(struct sr_quic_ctx *ctx, const struct sr_quic_keys *keys, uint64_t pn,
                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                   uint8_t *out, bool seal);

#endif
