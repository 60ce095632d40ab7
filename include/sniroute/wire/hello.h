/* SPDX-License-Identifier: MIT */
/* The TLS ClientHello reader: from the first bytes a client sends, find the server_name,
 * the ALPN list and whether the hello carries ECH, without decrypting or answering
 * anything. Pure functions over caller-owned bytes: no allocation, no I/O, no globals.
 * It does not normalize the name (see sniroute/name.h) and never looks past the hello. */
#ifndef SR_HELLO_H
#define SR_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/name.h"

enum sr_hello_status {
    SR_HELLO_NEED_MORE, /* everything so far is a valid start; wait for <need> more bytes */
    SR_HELLO_FOUND,     /* a complete, valid ClientHello with one host_name */
    SR_HELLO_NO_SNI,    /* a complete, valid ClientHello without server_name */
    SR_HELLO_NOT_TLS,   /* the first bytes are not a TLS handshake record: try another protocol */
    SR_HELLO_MALFORMED, /* starts like TLS but breaks a rule; <reason> says which */
};

enum sr_hello_reason {
    SR_HELLO_REASON_NONE = 0,
    /* NOT_TLS */
    SR_HELLO_REASON_NOT_HANDSHAKE,   /* byte 0 is not 22, the handshake content type */
    SR_HELLO_REASON_NOT_TLS_VERSION, /* record version's major byte is not 3 (SSLv2, HTTP...) */
    /* MALFORMED: record layer */
    SR_HELLO_REASON_RECORD_EMPTY,    /* a record with a zero length (RFC 8446 5.1) */
    SR_HELLO_REASON_RECORD_TOO_LONG, /* a record body over 2^14 bytes */
    SR_HELLO_REASON_RECORD_TYPE,     /* a non-handshake record before the hello ended */
    SR_HELLO_REASON_RECORD_TRAILING, /* the record that ends the hello runs past it */
    /* MALFORMED: handshake message */
    SR_HELLO_REASON_HANDSHAKE_TYPE,     /* the first handshake message is not client_hello */
    SR_HELLO_REASON_HANDSHAKE_TOO_LONG, /* longer than any ClientHello can be */
    SR_HELLO_REASON_OVERRUN,            /* a field runs past the block that holds it */
    SR_HELLO_REASON_BLOCK_END,          /* a block ends before its parent says it does */
    SR_HELLO_REASON_VERSION,            /* legacy_version's major byte is not 3 */
    SR_HELLO_REASON_SESSION_ID,         /* legacy_session_id longer than 32 bytes */
    SR_HELLO_REASON_CIPHER_SUITES,      /* cipher_suites empty or of odd length */
    SR_HELLO_REASON_COMPRESSION,        /* legacy_compression_methods empty */
    SR_HELLO_REASON_DUPLICATE_EXTENSION,
    SR_HELLO_REASON_TOO_MANY_EXTENSIONS, /* over SR_HELLO_MAX_EXTENSIONS */
    SR_HELLO_REASON_SNI_LIST,            /* server_name list empty */
    SR_HELLO_REASON_SNI_TYPE,            /* a name_type other than host_name (0) */
    SR_HELLO_REASON_SNI_MULTIPLE,        /* more than one host_name */
    SR_HELLO_REASON_SNI_NAME,            /* not a valid host name; <name_error> says why */
    SR_HELLO_REASON_ALPN,                /* ALPN list or one of its protocols empty */
    SR_HELLO_REASON_SUPPORTED_VERSIONS,  /* supported_versions empty or of odd length */
};

/* A run of bytes that is not NUL-terminated. */
struct sr_view {
    const uint8_t *ptr;
    size_t len;
};

/* Distinct extension types a hello may carry. Duplicates are found without allocation by
 * remembering the types seen; real clients send about 20 (Chrome: 18 plus 2 GREASE). */
#define SR_HELLO_MAX_EXTENSIONS 128

#define SR_HELLO_ALPN_SCRATCH 512

/* Caller-owned copy space, used ONLY for a reported field (the host name, the ALPN list)
 * that straddles a TLS record boundary; anything in one record is reported in place. */
struct sr_hello_scratch {
    uint8_t name[SR_NAME_MAX + 2]; /* 253 characters plus a trailing dot, plus one spare */
    uint8_t alpn[SR_HELLO_ALPN_SCRATCH];
};

struct sr_hello_result {
    enum sr_hello_status status;
    enum sr_hello_reason reason;   /* NONE unless MALFORMED or NOT_TLS */
    enum sr_name_error name_error; /* reason SNI_NAME: what sr_name_validate() said */
    /* NEED_MORE: the fewest further bytes worth waiting for (>= 1). While the first two
     * bytes are missing it is 1, since each alone may reveal NOT_TLS; after that it is the
     * fewest bytes that could complete the hello (the rest of it plus a header for each
     * record it still needs). A broken hello may be refused before that many arrive, a
     * valid one never completes sooner. A caller that waits for <need> bytes parses about
     * once per record, and may refuse at once when <need> will not fit its buffer. */
    size_t need;
    size_t hello_len;        /* FOUND/NO_SNI: bytes at the start of buf that hold the hello's
                                records; bytes after it (early data...) are not looked at */
    unsigned n_records;      /* records the hello spans */
    uint16_t record_version; /* of the first record */
    uint16_t legacy_version; /* ClientHello.legacy_version */
    uint16_t max_version;    /* highest non-GREASE supported_versions entry, else legacy_version */
    struct sr_view sni;      /* FOUND: host_name bytes as sent (validated, not normalized), in
                                buf or scratch->name */
    struct sr_view alpn;     /* protocol_name_list contents (after its 2-byte length), in buf or
                                scratch->alpn; len 0 if absent or dropped */
    bool has_alpn;
    bool alpn_dropped; /* ALPN straddled records and was larger than the scratch: has_alpn true,
                          alpn.len 0 */
    bool has_ech;      /* encrypted_client_hello (0xfe0d) present; <sni> is then the outer,
                          public name */
};

/* Parse the first <len> bytes a client sent (all of them, from byte 0; call again with the
 * longer buffer when more arrive) and fill <*res>. Accepts a ClientHello of TLS 1.0 to 1.3,
 * in any number of handshake records of 1 to 2^14 bytes each; the record that ends the hello
 * must end with it (RFC 8446 5.1). Every length is checked against its parent and every block
 * must end exactly where its parent says; a server_name must hold exactly one host_name that
 * passes sr_name_validate(); no extension may appear twice. GREASE values are accepted.
 * SSLv2-compatible hellos are NOT_TLS.
 *
 * Views in <*res> point into <buf> or into <*scratch> (never NULL, caller-owned; used only
 * for a field split across records) and live as long as both stay unmodified. Nothing is
 * kept after return. The fields of <*res> other than status, reason and need are meaningful
 * only for FOUND and NO_SNI. */
void sr_hello_parse(const uint8_t *buf, size_t len, struct sr_hello_scratch *scratch,
                    struct sr_hello_result *res);

/* Parse a bare ClientHello handshake message (msg_type, 24-bit length, body) with no TLS
 * record framing, as QUIC carries it in CRYPTO frames (RFC 9001 4.1.3). <buf>/<len> holds the
 * message's first <len> bytes, from byte 0; call again with more. The same code and checks as
 * sr_hello_parse() but for the record layer: never NOT_TLS and never a RECORD_* reason (a first
 * byte other than 1 is MALFORMED, HANDSHAKE_TYPE); NEED_MORE's <need> is exactly what the
 * message still lacks; hello_len is the message's length (bytes after it are not looked at);
 * n_records and record_version are 0. Views point into <buf> only, and live as long as it is
 * unmodified. Nothing is kept after return. */
void sr_hello_parse_message(const uint8_t *buf, size_t len, struct sr_hello_result *res);

/* Take the next protocol name from <*cursor> (which starts as res.alpn) into <*proto> and
 * advance. Returns false at the end of the list (or on a malformed entry, which a list from
 * sr_hello_parse() never has). */
bool sr_hello_alpn_next(struct sr_view *cursor, struct sr_view *proto);

/* "need_more", "found", "no_sni", "not_tls", "malformed": for logs and metrics. */
const char *sr_hello_status_str(enum sr_hello_status s);

/* A short static English phrase for <r>, e.g. "duplicate extension". */
const char *sr_hello_reason_str(enum sr_hello_reason r);

/* TLS alert descriptions we send (RFC 8446 6.2). */
#define SR_TLS_ALERT_HANDSHAKE_FAILURE 40
#define SR_TLS_ALERT_ACCESS_DENIED     49
#define SR_TLS_ALERT_DECODE_ERROR      50
#define SR_TLS_ALERT_INTERNAL_ERROR    80
#define SR_TLS_ALERT_UNRECOGNIZED_NAME 112

#define SR_HELLO_ALERT_LEN 7

/* Write a fatal alert record carrying <description> (record version 0x0303) to <out>. It is
 * plaintext, which is right: no keys exist before the ServerHello. */
void sr_hello_alert(uint8_t out[SR_HELLO_ALERT_LEN], uint8_t description);

/* The same with the record version <record_version> (the client's, from its first record,
 * so that a client that checks the record version of the server's first record, as a
 * TLS 1.0 stack may, reads the alert). */
void sr_hello_alert_record(uint8_t out[SR_HELLO_ALERT_LEN], uint16_t record_version,
                           uint8_t description);

#endif
