/* SPDX-License-Identifier: MIT */
/* What a QUIC server says to a client's first flight, read for `sniroute selftest --quic`: an
 * Initial addressed to the client's connection ID (unprotected with the server's Initial keys,
 * its frames walked for the ServerHello's first bytes and a CONNECTION_CLOSE), Handshake
 * packets (counted: no keys exist here to read them), a Retry (its integrity tag checked, RFC
 * 9001 5.8) or a Version Negotiation packet (RFC 9000 17.2.1). Anything else is "not for this
 * client", with a reason. Pure but for libcrypto, like sniroute/quic.h, whose contexts it uses:
 * no allocation in our code, no I/O, no clock, nothing kept between calls. It reads what a
 * server sends first; it is not a QUIC client and never answers. */
#ifndef SR_QUICANSWER_H
#define SR_QUICANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/quic.h"

enum sr_quicanswer_kind {
    SR_QUICANSWER_NONE,                /* nothing for this client; <reason> says why */
    SR_QUICANSWER_INITIAL,             /* the server's Initial or Handshake packets for it */
    SR_QUICANSWER_RETRY,               /* a Retry whose integrity tag verifies */
    SR_QUICANSWER_VERSION_NEGOTIATION, /* the server does not speak the client's version */
};

enum sr_quicanswer_reason {
    SR_QUICANSWER_REASON_NONE = 0,
    SR_QUICANSWER_REASON_SHORT_HEADER,  /* the first packet has no long header */
    SR_QUICANSWER_REASON_HEADER,        /* a header field runs past the datagram or its limit */
    SR_QUICANSWER_REASON_VERSION,       /* a version other than the client's */
    SR_QUICANSWER_REASON_DCID,          /* addressed to another connection ID */
    SR_QUICANSWER_REASON_TYPE,          /* a 0-RTT packet: only clients send those */
    SR_QUICANSWER_REASON_TOKEN,         /* a server Initial with a token, a Retry without */
    SR_QUICANSWER_REASON_DECRYPT,       /* an Initial the server's Initial keys do not open */
    SR_QUICANSWER_REASON_RESERVED_BITS, /* reserved header bits set once unprotected */
    SR_QUICANSWER_REASON_FRAME,         /* a frame an Initial may not carry, or cut short */
    SR_QUICANSWER_REASON_RETRY_TAG,     /* a Retry whose integrity tag does not verify */
    SR_QUICANSWER_REASON_RETRY_SCID,    /* a Retry from the client's own DCID (17.2.5.2) */
    SR_QUICANSWER_REASON_VN_ECHO,       /* Version Negotiation not echoing the client's IDs */
    SR_QUICANSWER_REASON_VN_OURS,       /* one that offers the version sent (RFC 9000 6.2) */
};

/* The client whose answers are read: what its Initials carried. */
struct sr_quicanswer_client {
    uint32_t version;    /* SR_QUIC_V1 or SR_QUIC_V2 */
    const uint8_t *dcid; /* its Initials' DCID: the server's Initial keys and a Retry's tag
                            derive from it (after a Retry, the Retry's SCID); 0..20 bytes */
    size_t dcid_len;
    const uint8_t *scid; /* its own connection ID, which answers are addressed to */
    size_t scid_len;
};

/* Handshake header, legacy_version and random: enough to tell a HelloRetryRequest. */
#define SR_QUICANSWER_HELLO_HEAD    38
#define SR_QUICANSWER_REASON_PHRASE 64
#define SR_QUICANSWER_MAX_VERSIONS  16

struct sr_quicanswer {
    enum sr_quicanswer_kind kind;
    enum sr_quicanswer_reason reason; /* NONE unless <kind> is NONE */
    uint32_t version;                 /* the first packet's version field, if it has one */
    /* INITIAL, RETRY: the server's connection ID, the client's DCID from now on (RFC 9000
     * 7.2), from the first packet. */
    uint8_t scid[SR_QUIC_MAX_CID];
    size_t scid_len;
    /* INITIAL */
    unsigned n_initial;   /* Initial packets read */
    unsigned n_handshake; /* Handshake packets for the client, skipped by their Length */
    uint8_t hello_head[SR_QUICANSWER_HELLO_HEAD]; /* the CRYPTO stream's first bytes (a
                                                     ServerHello's, if all is well) */
    size_t hello_head_len; /* how many of them arrived, contiguous from offset 0 */
    bool has_close;        /* a CONNECTION_CLOSE frame (type 0x1c): the server gave up */
    uint64_t close_error;  /* its error code: 0x0100 + a TLS alert for a crypto error */
    uint64_t close_frame_type;
    uint8_t close_reason[SR_QUICANSWER_REASON_PHRASE]; /* its reason phrase as sent, cut to
                                                          fit; not checked to be text */
    size_t close_reason_len;
    /* RETRY: the token to send in the next Initials, a view into the datagram */
    const uint8_t *token;
    size_t token_len;
    /* VERSION_NEGOTIATION: the versions offered, the first SR_QUICANSWER_MAX_VERSIONS */
    uint32_t versions[SR_QUICANSWER_MAX_VERSIONS];
    size_t n_versions;
};

/* Read one datagram <dgram>/<len> that came from the server a client <*cl> sent its Initials
 * to, into <*ans>. The first packet decides:
 * - a Version Negotiation packet (version 0) that echoes the client's connection IDs (its
 *   DCID is our SCID and its SCID our DCID) and lists 4-byte versions, the client's not among
 *   them: VERSION_NEGOTIATION;
 * - a long header of the client's version addressed to <cl->scid>: a Retry, taking the rest
 *   of the datagram, whose tag verifies over <cl->dcid>: RETRY; an Initial (no token, opened
 *   with the server's Initial keys of <cl->dcid>, reserved bits 0, frames PADDING, PING, ACK,
 *   CRYPTO and CONNECTION_CLOSE within it: RFC 9000 12.4) or a Handshake packet: INITIAL,
 *   and the packets coalesced after it are read the same way until one is not of that
 *   version and DCID, or does not parse (a server may pad a datagram so), which adds
 *   nothing to <*ans>;
 * - anything else: NONE with a reason, and every other field 0 but <version>. Packet numbers are
 * read as sent (a server's first packets are numbered from 0). <*ctx> is scratch for the call;
 * views in <*ans> point into <dgram>. */
void sr_quicanswer_read(struct sr_quic_ctx *ctx, const struct sr_quicanswer_client *cl,
                        const uint8_t *dgram, size_t len, struct sr_quicanswer *ans);

/* A short static English phrase for <r>, e.g. "addressed to another connection ID". */
const char *sr_quicanswer_reason_str(enum sr_quicanswer_reason r);

#endif
