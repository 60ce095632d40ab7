/* SPDX-License-Identifier: MIT */
/* The ClientHello builder behind `sniroute selftest`: real TLS 1.3-capable hellos (TLS 1.2
 * offered too) for a given server name, in the shapes that break fragile middleboxes: one
 * byte per write, several records, the record header apart from its body, a post-quantum key
 * share, a hello over 16 KiB; and the TLS 1.3-only hello a QUIC client sends (RFC 9001), for
 * sniroute/quicgen.h to carry in Initial packets. Pure: caller-owned buffers and
 * caller-supplied random bytes, no allocation, no I/O, no clock. It builds hellos; it cannot
 * finish a handshake (no TLS library: the key shares are random bytes, so a server answers
 * ServerHello, then fails). */
#ifndef SR_HELLOGEN_H
#define SR_HELLOGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Named groups we offer (RFC 8446 4.2.7; draft-ietf-tls-ecdhe-mlkem). */
#define SR_HELLOGEN_GROUP_X25519         0x001d
#define SR_HELLOGEN_GROUP_X25519MLKEM768 0x11ec

/* X25519MLKEM768 client share: an ML-KEM-768 encapsulation key (1184) then an X25519 key. */
#define SR_HELLOGEN_MLKEM_SHARE_LEN 1216

/* The largest hello any case builds, records included (the "large" case is 17 KB). */
#define SR_HELLOGEN_MAX_LEN (20 * 1024)

/* Most write boundaries a case names explicitly (see struct sr_hellogen_case). */
#define SR_HELLOGEN_MAX_CUTS 8

/* The random parts of a hello, drawn by the caller (getrandom(2) in the CLI, a fixed
 * pattern in tests). */
struct sr_hellogen_random {
    uint8_t random[32];
    uint8_t session_id[32]; /* legacy_session_id: TLS 1.3 middlebox compatibility mode */
    uint8_t x25519[32];
    uint8_t mlkem[SR_HELLOGEN_MLKEM_SHARE_LEN];
};

struct sr_hellogen_opts {
    const char *name; /* server_name host_name, <name_len> bytes, 1 .. 255, not NUL-needed */
    size_t name_len;
    const char *alpn;  /* comma-separated protocol names ("h2,http/1.1"), NULL: no ALPN */
    bool has_pq_share; /* offer X25519MLKEM768 first, with its 1216-byte share */
    size_t target_len; /* pad the handshake message to at least this many bytes; 0: none */
    const struct sr_hellogen_random *rnd;
    /* A QUIC client's hello (RFC 9001): TLS 1.3 only, an empty legacy_session_id (8.4), and a
     * quic_transport_parameters extension whose initial_source_connection_id is <quic_scid>
     * (RFC 9000 7.3: the Source Connection ID of the client's Initial packets, 0..20 bytes;
     * NULL when empty). QUIC needs ALPN too (RFC 9001 8.1): that is <alpn>'s business. */
    bool is_quic;
    const uint8_t *quic_scid;
    size_t quic_scid_len;
};

/* Extension type of quic_transport_parameters (RFC 9001 8.2). */
#define SR_HELLOGEN_EXT_QUIC_TRANSPORT_PARAMETERS 0x39

/* Write one ClientHello handshake message (type, 24-bit length and body; no record header)
 * for <*opts> to <out>. Extensions: server_name, supported_groups, ec_point_formats,
 * signature_algorithms, supported_versions (1.3 and 1.2), psk_key_exchange_modes, key_share
 * (X25519MLKEM768 if asked, then x25519), ALPN if asked, extended_master_secret,
 * renegotiation_info, and last a padding extension (RFC 7685) if <target_len> asks for more
 * bytes: the message is then exactly <target_len> long, or 4 bytes over when it fell short
 * by less than an empty padding extension. With <is_quic>: only the TLS 1.3 cipher suites
 * and version, no session ID, none of the three TLS 1.2-only extensions (ec_point_formats,
 * extended_master_secret, renegotiation_info), and quic_transport_parameters before the
 * padding. Returns the message length, or 0 if it would not fit <cap>, the name is empty or
 * over 255 bytes, an ALPN protocol is empty or over 255 bytes, <quic_scid_len> is over 20,
 * or the message would exceed 2^24 - 1 bytes. */
size_t sr_hellogen_message(uint8_t *out, size_t cap, const struct sr_hellogen_opts *opts);

/* Wrap the handshake message <msg>/<msg_len> into <n_records> TLS handshake records (record
 * version 0x0301, as clients send in the first flight) of near-equal size, written to
 * <out>. If that would put more than 2^14 bytes in a record, it writes full 2^14-byte
 * records and one for the rest instead, as a TLS stack does: <n_records> 1 gives the fewest
 * records possible. Returns the bytes written, or 0 if they do not fit <cap> or <n_records>
 * is 0 or more than <msg_len>. */
size_t sr_hellogen_frame(uint8_t *out, size_t cap, const uint8_t *msg, size_t msg_len,
                         size_t n_records);

/* One self-test case: which hello, how it is framed and how it is written. The bytes go out
 * in pieces: cut at each of <cuts> (offsets into the framed hello, increasing), and each
 * piece further in writes of at most <write_max> bytes (0: no limit), with <pause_ms>
 * between writes. */
struct sr_hellogen_case {
    const char *name;        /* "plain", "bytewise", ... (stable: --only and scripts use it) */
    const char *description; /* a few words for the report */
    bool has_pq_share;
    size_t target_len;                 /* as in struct sr_hellogen_opts */
    size_t n_records;                  /* as in sr_hellogen_frame() */
    bool cut_records;                  /* also cut at every record boundary */
    size_t cuts[SR_HELLOGEN_MAX_CUTS]; /* fixed cuts; 0 ends the list */
    size_t n_even_cuts; /* also cut the hello into this many near-equal pieces (0: no) */
    size_t write_max;
    unsigned pause_ms;
};

/* The cases, in report order, and their count. Static, read-only. */
extern const struct sr_hellogen_case sr_hellogen_cases[];
extern const size_t sr_hellogen_n_cases;

/* The case named <name> (NUL-terminated), or NULL. */
const struct sr_hellogen_case *sr_hellogen_case_find(const char *name);

/* Build case <c>'s framed hello for <name>/<name_len>, <alpn> (NULL: none) and <rnd> into
 * <out> (SR_HELLOGEN_MAX_LEN bytes suffice), and its write boundaries into <ends>: the end
 * offset of each write, increasing, the last one the hello's length. <*n_ends> receives
 * the number of writes. Returns the hello's length, or 0 if the hello could not be built
 * (as sr_hellogen_message()) or <ends_cap> is too small. */
size_t sr_hellogen_case_build(const struct sr_hellogen_case *c, const char *name, size_t name_len,
                              const char *alpn, const struct sr_hellogen_random *rnd, uint8_t *out,
                              size_t cap, size_t *ends, size_t ends_cap, size_t *n_ends);

#endif
