/* SPDX-License-Identifier: MIT */
/* The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's proxy-protocol.txt
 * defines them: build the header we prepend toward an upstream, and parse the one a load
 * balancer in front prepends toward us. Pure functions over caller-owned bytes: no
 * allocation, no I/O, no globals. Whether a peer may send a header at all (trusted_proxies)
 * is the caller's decision; see sniroute/cidr.h. */
#ifndef SR_PROXYPROTO_H
#define SR_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line, CRLF included: "PROXY UNKNOWN " + two full IPv6 + two ports (spec
 * 2.1). A receiver that has 107 bytes without a CRLF refuses; a sender never needs more. */
#define SR_PROXYPROTO_V1_MAX 107

/* v2: the fixed part (12-byte signature, ver_cmd, fam, 16-bit length). */
#define SR_PROXYPROTO_V2_HEADER 16

/* v2 PP2_TYPE_AUTHORITY: the builder carries at most this many bytes. The authority is the
 * TLS server name, which sr_name_validate() caps at 254 (253 plus a trailing dot). */
#define SR_PROXYPROTO_AUTHORITY_MAX 255

/* The most sr_proxyproto_build_v2() writes: header, two IPv6 addresses and ports (36), one
 * authority TLV (3 + 255). */
#define SR_PROXYPROTO_V2_BUILD_MAX (SR_PROXYPROTO_V2_HEADER + 36 + 3 + SR_PROXYPROTO_AUTHORITY_MAX)

/* v2 TLV bytes accepted after the address block. The wire allows 64 KiB, which a client
 * could make us buffer before the ClientHello; real senders use far less (HAProxy with
 * every option: ALPN, authority <= 255, unique id <= 128, CRC32C, SSL with version, CN,
 * cipher and algorithms, netns: a few hundred bytes; AWS, GCP and Azure add one TLV of tens
 * of bytes). 1 KiB leaves room for all of that at once and keeps the cap on the peek buffer
 * small. */
#define SR_PROXYPROTO_V2_TLV_MAX 1024

/* The longest header sr_proxyproto_parse() accepts: v2 with AF_UNIX addresses (216) and the
 * TLV cap. A caller's buffer must hold this much besides the ClientHello. */
#define SR_PROXYPROTO_PARSE_MAX (SR_PROXYPROTO_V2_HEADER + 216 + SR_PROXYPROTO_V2_TLV_MAX)

enum sr_proxyproto_status {
    SR_PROXYPROTO_NEED_MORE, /* a valid start so far; wait for <need> more bytes */
    SR_PROXYPROTO_OK,        /* a complete, valid header of <header_len> bytes */
    SR_PROXYPROTO_NOT_PROXY, /* the first bytes match neither signature: no header at all */
    SR_PROXYPROTO_INVALID,   /* a signature, then a broken header; <reason> says how */
};

enum sr_proxyproto_reason {
    SR_PROXYPROTO_REASON_NONE = 0,
    /* NOT_PROXY */
    SR_PROXYPROTO_REASON_SIGNATURE, /* neither "PROXY" nor the v2 signature */
    /* INVALID, v1 */
    SR_PROXYPROTO_REASON_V1_PROTOCOL,  /* "PROXY" not followed by " TCP4 ", " TCP6 ", " UNKNOWN" */
    SR_PROXYPROTO_REASON_V1_TOO_LONG,  /* no CRLF within SR_PROXYPROTO_V1_MAX bytes */
    SR_PROXYPROTO_REASON_V1_EOL,       /* a CR without LF or an LF without CR */
    SR_PROXYPROTO_REASON_V1_CHARACTER, /* a byte that cannot appear in this kind of line */
    SR_PROXYPROTO_REASON_V1_FIELDS,    /* not exactly 4 fields separated by single spaces */
    SR_PROXYPROTO_REASON_V1_ADDRESS,   /* an address not of the announced family */
    SR_PROXYPROTO_REASON_V1_PORT,      /* a port not 0..65535 in decimal without leading zero */
    /* INVALID, v2 */
    SR_PROXYPROTO_REASON_V2_VERSION,     /* version nibble not 2 */
    SR_PROXYPROTO_REASON_V2_COMMAND,     /* command neither LOCAL (0) nor PROXY (1) */
    SR_PROXYPROTO_REASON_V2_FAMILY,      /* fam byte not one of 00 11 12 21 22 31 32 */
    SR_PROXYPROTO_REASON_V2_TOO_LONG,    /* more than SR_PROXYPROTO_V2_TLV_MAX TLV bytes */
    SR_PROXYPROTO_REASON_V2_ADDRESS_LEN, /* length shorter than the family's address block */
    SR_PROXYPROTO_REASON_V2_TLV,         /* a TLV runs past the header's end */
    SR_PROXYPROTO_REASON_V2_DUPLICATE,   /* AUTHORITY or CRC32C more than once */
    SR_PROXYPROTO_REASON_V2_SSL,         /* PP2_TYPE_SSL shorter than 5 or its sub-TLVs overrun */
    SR_PROXYPROTO_REASON_V2_CRC32C_LEN,  /* PP2_TYPE_CRC32C value not 4 bytes */
    SR_PROXYPROTO_REASON_V2_CRC32C,      /* checksum does not match the header */
};

enum sr_proxyproto_command {
    SR_PROXYPROTO_CMD_PROXY, /* relayed on behalf of a client: use the addresses if given */
    SR_PROXYPROTO_CMD_LOCAL, /* v2 LOCAL: the sender's own connection (a health check) */
};

enum sr_proxyproto_family {
    SR_PROXYPROTO_FAMILY_UNSPEC, /* no usable addresses: keep the socket's own */
    SR_PROXYPROTO_FAMILY_TCP4,
    SR_PROXYPROTO_FAMILY_TCP6,
};

struct sr_proxyproto_result {
    enum sr_proxyproto_status status;
    enum sr_proxyproto_reason reason; /* NONE unless NOT_PROXY or INVALID */
    /* NEED_MORE: the fewest further bytes worth waiting for (>= 1). It is 1 while the
     * signature is incomplete, since each byte may say NOT_PROXY; for v2 it is then the rest
     * of the header as its length says; for v1 the fewest bytes a valid line could still
     * need (at least the CRLF). A valid header never completes sooner. */
    size_t need;
    /* The fields below are meaningful only for OK. */
    size_t header_len; /* bytes at the start of buf that hold the header; the client's own
                          data (the ClientHello) starts right after */
    unsigned version;  /* 1 or 2 */
    enum sr_proxyproto_command command;
    /* TCP4/TCP6: <src> and <dst> hold a sockaddr_in/sockaddr_in6 (ports in network order,
     * other fields zero). UNSPEC: both are zeroed (ss_family AF_UNSPEC); that is v1
     * "UNKNOWN", v2 LOCAL, and v2 PROXY over AF_UNSPEC, UDP or AF_UNIX, where the spec lets
     * the receiver fall back to the connection's real endpoints. TCP6 addresses are reported
     * as sent, v4-mapped ones included. */
    enum sr_proxyproto_family family;
    struct sockaddr_storage src;
    struct sockaddr_storage dst;
    /* v2 PP2_TYPE_AUTHORITY (the client's SNI, as the sender saw it), a view into buf; not
     * NUL-terminated and NOT validated: run sr_name_validate() before trusting it. */
    bool has_authority;
    const uint8_t *authority;
    size_t authority_len;
};

/* Parse the first <len> bytes a peer sent (all of them, from byte 0; call again with the
 * longer buffer when more arrive) and fill <*res>.
 *
 * Byte 0 decides the version: 'P' can only start v1, '\r' only v2, anything else (a TLS
 * record starts with 22) is NOT_PROXY at once; any later byte of "PROXY" or of the 12-byte
 * v2 signature that does not match is NOT_PROXY as soon as it arrives.
 *
 * v1 (spec 2.1): "PROXY TCP4 SRC DST SPORT DPORT\r\n", likewise TCP6, or "PROXY UNKNOWN"
 * followed by anything printable up to the CRLF; at most 107 bytes. Single spaces; IPv4 as
 * a dotted quad without leading zeros, IPv6 as inet_pton() reads it (the family must match
 * the keyword); ports 0..65535 without leading zeros. A byte that cannot belong to the line
 * is INVALID as soon as it arrives; addresses are decoded once the CRLF is in.
 *
 * v2 (spec 2.2): version 2, command LOCAL or PROXY, fam one of the seven the spec lists;
 * the length may not exceed the address block plus SR_PROXYPROTO_V2_TLV_MAX, which is
 * decided from the first 16 bytes. For PROXY with a known address block the TLVs after it
 * are walked: each must fit in the header and the last must end exactly at its end;
 * AUTHORITY and CRC32C may appear once; a CRC32C is verified; PP2_TYPE_SSL's sub-TLVs must
 * fit in it. LOCAL and PROXY over AF_UNSPEC ignore everything after the fixed 16 bytes, as
 * the spec says. Other TLV types are skipped.
 *
 * <res->authority> points into <buf> and lives as long as it stays unmodified. Nothing is
 * kept after return. */
void sr_proxyproto_parse(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res);

/* Write a v1 line for a connection from <src> to <dst> into <out> of <cap> bytes (no NUL).
 * Both AF_INET: "TCP4". Either AF_INET6: "TCP6", with an AF_INET one written as v4-mapped
 * IPv6 (::ffff:a.b.c.d), as HAProxy does, so the peer still gets both real endpoints. NULL
 * or another family: "PROXY UNKNOWN\r\n". IPv6 scope ids are not carried (the protocol has
 * no place for them). Returns the bytes written, or 0 if they do not fit in <cap>;
 * SR_PROXYPROTO_V1_MAX always suffices. */
size_t sr_proxyproto_build_v1(char *out, size_t cap, const struct sockaddr *src,
                              const struct sockaddr *dst);

/* Write a v2 header (command PROXY) into <out> of <cap> bytes. Families as in
 * sr_proxyproto_build_v1(): TCP over IPv4 (fam 0x11) when both are AF_INET, else TCP over
 * IPv6 (0x21) with v4-mapped addresses; NULL or another family gives command LOCAL with
 * AF_UNSPEC (0x20 0x00), as HAProxy sends. If <authority_len> > 0, the <authority> bytes
 * (the SNI) follow as one PP2_TYPE_AUTHORITY TLV; <authority> may be NULL only when
 * <authority_len> is 0. Returns the bytes written, or 0 if they do not fit in <cap> or
 * <authority_len> exceeds SR_PROXYPROTO_AUTHORITY_MAX; SR_PROXYPROTO_V2_BUILD_MAX always
 * suffices. */
size_t sr_proxyproto_build_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                              const struct sockaddr *dst, const char *authority,
                              size_t authority_len);

/* "need_more", "ok", "not_proxy", "invalid": for logs and metrics. */
const char *sr_proxyproto_status_str(enum sr_proxyproto_status s);

/* A short static English phrase for <r>, e.g. "v2: TLV runs past the header". */
const char *sr_proxyproto_reason_str(enum sr_proxyproto_reason r);

#endif
