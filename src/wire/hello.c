/* SPDX-License-Identifier: MIT */
/* A minimal ClientHello reader with one purpose: say where a TLS connection wants to go.
 * It frames handshake records (or takes a bare handshake message, as QUIC's CRYPTO stream
 * carries it), walks the ClientHello checking every length against its parent, and reports
 * the host name, the ALPN list, the versions and ECH presence. It does not look inside key
 * shares or cipher lists, keeps no state between calls, and never copies except a reported
 * field that straddles two records. */
#include "sniroute/wire/hello.h"

#include <stdint.h>
#include <string.h>

/*
 * What is read, and what each field must satisfy. Widths in bytes; "2 + a..b" is a 16-bit
 * length followed by a..b bytes. A block must end exactly where its parent block says.
 *
 * TLSPlaintext (RFC 8446 5.1), repeated until the handshake message is complete
 *   type                        1        22 (handshake). First record: else NOT_TLS. Later:
 *                                        MALFORMED, nothing may interleave a handshake
 *                                        message (5.1).
 *   legacy_record_version       2        first record: major byte 3, else NOT_TLS (SSLv2,
 *                                        HTTP, SSH...). Later records: ignored, as 5.1 says.
 *   length                      2        1..2^14 (5.1: no zero-length handshake fragments).
 *                                        The record holding the hello's last byte must end
 *                                        there: a key change follows a ClientHello (5.1).
 * Handshake (4)
 *   msg_type                    1        1 (client_hello)
 *   length                      3        at most HELLO_BODY_MAX, the largest ClientHello
 *                                        the fields below can describe
 * ClientHello (RFC 8446 4.1.2; the same layout in TLS 1.0 to 1.2)
 *   legacy_version              2        major byte 3 (0x0301..0x0303 in practice)
 *   random                      32
 *   legacy_session_id           1 + 0..32
 *   cipher_suites               2 + 2..2^16-2, even (2 bytes per suite)
 *   legacy_compression_methods  1 + 1..2^8-1
 *   extensions                  2 + 0..2^16-1, ends with the hello. Absent is allowed
 *                                        before TLS 1.3 (RFC 5246 7.4.1.2): NO_SNI.
 * Extension (RFC 8446 4.2)
 *   extension_type              2        at most once each (4.2); GREASE types are fine
 *   extension_data              2 + 0..2^16-1, within extensions
 * server_name (type 0) extension_data (RFC 6066 3)
 *   server_name_list            2 + 1..2^16-1, ends with extension_data
 *     name_type                 1        0 (host_name); RFC 6066 defines no other, and
 *                                        allows one name per type: exactly one entry
 *     HostName                  2 + 1..2^16-1, sr_name_validate(): at most 253 characters
 *                                        plus one trailing dot, no NUL, '/', space...
 * application_layer_protocol_negotiation (type 16) extension_data (RFC 7301 3.1)
 *   protocol_name_list          2 + 2..2^16-1, ends with extension_data
 *     ProtocolName              1 + 1..2^8-1
 * supported_versions (type 43) extension_data, ClientHello form (RFC 8446 4.2.1)
 *   versions                    1 + 2..254, even, ends with extension_data
 * encrypted_client_hello (type 0xfe0d, RFC 9849): presence only
 */

#define TLS_RECORD_HEADER   5
#define TLS_RECORD_MAX      16384 /* 2^14, RFC 8446 5.1 */
#define TLS_CT_HANDSHAKE    22
#define TLS_HS_HEADER       4
#define TLS_HS_CLIENT_HELLO 1

/* 2 + 32 + (1 + 32) + (2 + 65534) + (1 + 255) + (2 + 65535): anything longer cannot be a
 * ClientHello, so it is refused as soon as its length arrives. */
#define HELLO_BODY_MAX 131396

#define EXT_SERVER_NAME        0
#define EXT_ALPN               16
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_ECH                0xfe0d

#define SNI_HOST_NAME 0

/*
 * The reader: a cursor over the handshake message as it runs through the record bodies.
 * There is no state enum and nothing survives a call: the parse is a straight line from
 * byte 0, and <need> keeps the repeated parse cheap. Positions inside the handshake
 * message (<hs_got>, block ends) count handshake bytes, not buffer bytes, so a block may
 * span records without the parse noticing.
 */
struct rd {
    const uint8_t *buf;
    size_t len;
    size_t pos;       /* next unread byte of buf */
    size_t body_left; /* bytes of the current record's body from pos on (some may be missing) */
    size_t hs_total;  /* handshake message size with its header; TLS_HS_HEADER until known */
    size_t hs_got;    /* handshake bytes consumed */
    bool hs_known;
    bool bare; /* a handshake message without records (QUIC CRYPTO data): one endless body */
    unsigned n_records;
    uint16_t record_version;
    enum sr_hello_status status; /* why the last read failed */
    enum sr_hello_reason reason;
    size_t need;
};

static bool
rd_fail(struct rd *rd, enum sr_hello_status status, enum sr_hello_reason reason)
{
    rd->status = status;
    rd->reason = reason;
    return false;
}

static bool
rd_malformed(struct rd *rd, enum sr_hello_reason reason)
{
    return rd_fail(rd, SR_HELLO_MALFORMED, reason);
}

/* Bytes on the wire that carry <n> more handshake bytes in fresh records. */
static size_t
records_for(size_t n)
{
    return n + TLS_RECORD_HEADER * ((n + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX);
}

/* The buffer ran out. Work out the fewest bytes that could complete the hello: the rest of
 * this record, then the handshake bytes it cannot hold, each record with its header. */
static bool
rd_starve(struct rd *rd)
{
    size_t left = rd->hs_total - rd->hs_got; /* a lower bound until the length is known */

    rd->status = SR_HELLO_NEED_MORE;
    if (rd->bare) {
        rd->need = left; /* >= 1: starving means a byte of the message is missing */
    } else if (rd->body_left > 0) {
        rd->need = rd->body_left + (left > rd->body_left ? records_for(left - rd->body_left) : 0);
    } else if (rd->n_records == 0 && rd->len < 2) {
        rd->need = 1; /* byte 0 and byte 1 may each say NOT_TLS: ask for them one by one */
    } else {
        rd->need = records_for(left) - (rd->len - rd->pos); /* minus the header bytes we have */
    }
    return false;
}

/* Step 1, framing: the current record body is used up; read the next record header.
 * Decides NOT_TLS on the first byte or two, so a non-TLS fallback does not wait. */
static bool
rd_record(struct rd *rd)
{
    const uint8_t *h = rd->buf + rd->pos;
    size_t have = rd->len - rd->pos;
    bool first = rd->n_records == 0;
    size_t n;

    if (have >= 1 && h[0] != TLS_CT_HANDSHAKE) {
        return first ? rd_fail(rd, SR_HELLO_NOT_TLS, SR_HELLO_REASON_NOT_HANDSHAKE)
                     : rd_malformed(rd, SR_HELLO_REASON_RECORD_TYPE);
    }
    if (first && have >= 2 && h[1] != 3) {
        return rd_fail(rd, SR_HELLO_NOT_TLS, SR_HELLO_REASON_NOT_TLS_VERSION);
    }
    if (have < TLS_RECORD_HEADER) {
        return rd_starve(rd);
    }
    n = (size_t)h[3] << 8 | h[4];
    if (n == 0) {
        return rd_malformed(rd, SR_HELLO_REASON_RECORD_EMPTY);
    }
    if (n > TLS_RECORD_MAX) {
        return rd_malformed(rd, SR_HELLO_REASON_RECORD_TOO_LONG);
    }
    /* Once the message length is known, a record reaching past it carries something after
     * the hello, which 5.1 forbids; refusing here means the records must line up exactly. */
    if (rd->hs_known && n > rd->hs_total - rd->hs_got) {
        return rd_malformed(rd, SR_HELLO_REASON_RECORD_TRAILING);
    }
    if (first) {
        rd->record_version = (uint16_t)(h[1] << 8 | h[2]);
    }
    rd->pos += TLS_RECORD_HEADER;
    rd->body_left = n;
    rd->n_records++;
    return true;
}

/* Make at least one handshake byte readable at pos. */
static bool
rd_more(struct rd *rd)
{
    if (rd->body_left == 0 && !rd_record(rd)) {
        return false;
    }
    if (rd->pos == rd->len) {
        return rd_starve(rd);
    }
    return true;
}

/* Handshake bytes readable at pos without crossing a record or the end of buf. */
static size_t
rd_run(const struct rd *rd)
{
    size_t have = rd->len - rd->pos;
    return have < rd->body_left ? have : rd->body_left;
}

static void
rd_advance(struct rd *rd, size_t n)
{
    rd->pos += n;
    rd->body_left -= n;
    rd->hs_got += n;
}

/* Consume <n> bytes, copying them to <dst> unless it is NULL. */
static bool
rd_copy(struct rd *rd, size_t n, uint8_t *dst)
{
    while (n > 0) {
        size_t c;

        if (!rd_more(rd)) {
            return false;
        }
        c = rd_run(rd);
        if (c > n) {
            c = n;
        }
        if (dst != NULL) {
            memcpy(dst, rd->buf + rd->pos, c);
            dst += c;
        }
        rd_advance(rd, c);
        n -= c;
    }
    return true;
}

/* Read a <width>-byte big-endian integer that must lie within the block ending at <end>. */
static bool
rd_uint(struct rd *rd, size_t end, size_t width, uint32_t *v)
{
    uint32_t x = 0;

    if (end - rd->hs_got < width) {
        return rd_malformed(rd, SR_HELLO_REASON_OVERRUN);
    }
    if (rd_run(rd) >= width) { /* the usual case: all in this record and received */
        const uint8_t *p = rd->buf + rd->pos;
        size_t i;
        for (i = 0; i < width; i++) {
            x = x << 8 | p[i];
        }
        rd_advance(rd, width);
        *v = x;
        return true;
    }
    while (width-- > 0) {
        if (!rd_more(rd)) {
            return false;
        }
        x = x << 8 | rd->buf[rd->pos];
        rd_advance(rd, 1);
    }
    *v = x;
    return true;
}

/* Skip <n> bytes that must lie within the block ending at <end>. */
static bool
rd_skip(struct rd *rd, size_t end, size_t n)
{
    if (end - rd->hs_got < n) {
        return rd_malformed(rd, SR_HELLO_REASON_OVERRUN);
    }
    return rd_copy(rd, n, NULL);
}

/* Enter a block: read its <width>-byte length and set <*block_end>. The block must fit in
 * its parent ending at <end>; if <exact>, it must also end where the parent ends. Both are
 * decided from the length alone, before the block's bytes arrive. */
static bool
rd_block(struct rd *rd, size_t end, size_t width, bool exact, size_t *block_end)
{
    uint32_t n;

    if (!rd_uint(rd, end, width, &n)) {
        return false;
    }
    if (n > end - rd->hs_got) {
        return rd_malformed(rd, SR_HELLO_REASON_OVERRUN);
    }
    if (exact && n != end - rd->hs_got) {
        return rd_malformed(rd, SR_HELLO_REASON_BLOCK_END);
    }
    *block_end = rd->hs_got + n;
    return true;
}

/* Take <n> bytes as a view: in place when they sit in one record, else copied to <scratch>
 * if they fit in <cap>, else consumed and reported as dropped (view NULL/0, *dropped set). */
static bool
rd_take(struct rd *rd, size_t n, uint8_t *scratch, size_t cap, struct sr_view *v, bool *dropped)
{
    v->ptr = NULL;
    v->len = 0;
    if (!rd_more(rd)) {
        return false;
    }
    if (rd_run(rd) >= n) {
        v->ptr = rd->buf + rd->pos;
        v->len = n;
        rd_advance(rd, n);
        return true;
    }
    if (rd->body_left >= n) {
        return rd_copy(rd, n, NULL); /* one record, not all here yet: starves */
    }
    if (n > cap) {
        *dropped = true;
        return rd_copy(rd, n, NULL);
    }
    v->ptr = scratch;
    v->len = n;
    return rd_copy(rd, n, scratch);
}

static bool
is_grease(uint32_t v)
{
    /* RFC 8701: 0x0A0A, 0x1A1A ... 0xFAFA. */
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* Step 4a, server_name: exactly one valid host_name. <end> is the extension_data's end. */
static bool
parse_server_name(struct rd *rd, size_t end, struct sr_hello_scratch *scratch,
                  struct sr_hello_result *res, bool *has_name)
{
    size_t list_end;
    size_t name_end;
    uint32_t type;
    bool dropped = false;

    if (!rd_block(rd, end, 2, true, &list_end)) {
        return false;
    }
    if (list_end == rd->hs_got) {
        return rd_malformed(rd, SR_HELLO_REASON_SNI_LIST);
    }
    while (rd->hs_got < list_end) {
        if (!rd_uint(rd, list_end, 1, &type)) {
            return false;
        }
        /* Any other type has a layout we cannot know, so the list cannot be walked past it. */
        if (type != SNI_HOST_NAME) {
            return rd_malformed(rd, SR_HELLO_REASON_SNI_TYPE);
        }
        if (*has_name) {
            return rd_malformed(rd, SR_HELLO_REASON_SNI_MULTIPLE);
        }
        if (!rd_block(rd, list_end, 2, false, &name_end)) {
            return false;
        }
        /* Refuse from the length alone when no valid name is that long (or empty). */
        if (name_end == rd->hs_got) {
            res->name_error = SR_NAME_EMPTY;
            return rd_malformed(rd, SR_HELLO_REASON_SNI_NAME);
        }
        if (name_end - rd->hs_got > SR_NAME_MAX + 1) {
            res->name_error = SR_NAME_TOO_LONG;
            return rd_malformed(rd, SR_HELLO_REASON_SNI_NAME);
        }
        if (!rd_take(rd, name_end - rd->hs_got, scratch->name, sizeof(scratch->name), &res->sni,
                     &dropped)) {
            return false;
        }
        res->name_error = sr_name_validate(res->sni.ptr, res->sni.len);
        if (res->name_error != SR_NAME_OK) {
            return rd_malformed(rd, SR_HELLO_REASON_SNI_NAME);
        }
        *has_name = true;
    }
    return true;
}

/* Step 4b, ALPN: check every protocol, then take the list (in place or via scratch). */
static bool
parse_alpn(struct rd *rd, size_t end, struct sr_hello_scratch *scratch, struct sr_hello_result *res)
{
    struct rd start;
    size_t list_end;
    size_t n;
    uint32_t plen;

    if (!rd_block(rd, end, 2, true, &list_end)) {
        return false;
    }
    n = list_end - rd->hs_got;
    if (n == 0) {
        return rd_malformed(rd, SR_HELLO_REASON_ALPN);
    }
    /* Walk it first, so a list too big for the scratch is still checked, then take it from a
     * saved cursor: the bytes are all here by then, so the second pass cannot starve. */
    if (!rd_more(rd)) {
        return false;
    }
    start = *rd;
    while (rd->hs_got < list_end) {
        if (!rd_uint(rd, list_end, 1, &plen)) {
            return false;
        }
        if (plen == 0) {
            return rd_malformed(rd, SR_HELLO_REASON_ALPN);
        }
        if (!rd_skip(rd, list_end, plen)) {
            return false;
        }
    }
    res->has_alpn = true;
    return rd_take(&start, n, scratch->alpn, sizeof(scratch->alpn), &res->alpn, &res->alpn_dropped);
}

/* Step 4c, supported_versions: remember the highest real (non-GREASE) version offered. */
static bool
parse_supported_versions(struct rd *rd, size_t end, struct sr_hello_result *res)
{
    size_t list_end;
    uint32_t v;

    if (!rd_block(rd, end, 1, true, &list_end)) {
        return false;
    }
    if (list_end == rd->hs_got || (list_end - rd->hs_got) % 2 != 0) {
        return rd_malformed(rd, SR_HELLO_REASON_SUPPORTED_VERSIONS);
    }
    while (rd->hs_got < list_end) {
        if (!rd_uint(rd, list_end, 2, &v)) {
            return false;
        }
        if (!is_grease(v) && v > res->max_version) {
            res->max_version = (uint16_t)v;
        }
    }
    return true;
}

/* Step 2, the handshake header; step 3, the fixed ClientHello fields; step 4, extensions.
 * Returns true when the whole hello checked out. */
static bool
parse_hello(struct rd *rd, struct sr_hello_scratch *scratch, struct sr_hello_result *res,
            bool *has_name)
{
    uint16_t seen[SR_HELLO_MAX_EXTENSIONS];
    size_t n_seen = 0;
    size_t end;
    size_t ext_end;
    size_t data_end;
    uint32_t v;
    uint32_t type;
    size_t i;

    /* Step 2: msg_type, checked before its length arrives; then the 24-bit length, which
     * fixes where the message, and so the last record, must end. */
    if (!rd_uint(rd, TLS_HS_HEADER, 1, &v)) {
        return false;
    }
    if (v != TLS_HS_CLIENT_HELLO) {
        return rd_malformed(rd, SR_HELLO_REASON_HANDSHAKE_TYPE);
    }
    if (!rd_uint(rd, TLS_HS_HEADER, 3, &v)) {
        return false;
    }
    if (v > HELLO_BODY_MAX) {
        return rd_malformed(rd, SR_HELLO_REASON_HANDSHAKE_TOO_LONG);
    }
    rd->hs_total = TLS_HS_HEADER + (size_t)v;
    rd->hs_known = true;
    if (!rd->bare && rd->body_left > rd->hs_total - rd->hs_got) {
        return rd_malformed(rd, SR_HELLO_REASON_RECORD_TRAILING);
    }
    end = rd->hs_total;

    /* Step 3: the fixed fields. Only their lengths matter to us. */
    if (!rd_uint(rd, end, 2, &v)) {
        return false;
    }
    if (v >> 8 != 3) {
        return rd_malformed(rd, SR_HELLO_REASON_VERSION);
    }
    res->legacy_version = (uint16_t)v;
    if (!rd_skip(rd, end, 32)) { /* random */
        return false;
    }
    if (!rd_uint(rd, end, 1, &v)) {
        return false;
    }
    if (v > 32) {
        return rd_malformed(rd, SR_HELLO_REASON_SESSION_ID);
    }
    if (!rd_skip(rd, end, v)) {
        return false;
    }
    if (!rd_uint(rd, end, 2, &v)) {
        return false;
    }
    if (v == 0 || v % 2 != 0) {
        return rd_malformed(rd, SR_HELLO_REASON_CIPHER_SUITES);
    }
    if (!rd_skip(rd, end, v)) {
        return false;
    }
    if (!rd_uint(rd, end, 1, &v)) {
        return false;
    }
    if (v == 0) {
        return rd_malformed(rd, SR_HELLO_REASON_COMPRESSION);
    }
    if (!rd_skip(rd, end, v)) {
        return false;
    }
    if (rd->hs_got == end) {
        return true; /* a TLS 1.0-1.2 hello may stop here: no extensions, so no SNI */
    }

    /* Step 4: extensions, each within the block, each type once. */
    if (!rd_block(rd, end, 2, true, &ext_end)) {
        return false;
    }
    while (rd->hs_got < ext_end) {
        if (!rd_uint(rd, ext_end, 2, &type)) {
            return false;
        }
        for (i = 0; i < n_seen; i++) {
            if (seen[i] == type) {
                return rd_malformed(rd, SR_HELLO_REASON_DUPLICATE_EXTENSION);
            }
        }
        if (n_seen == SR_HELLO_MAX_EXTENSIONS) {
            return rd_malformed(rd, SR_HELLO_REASON_TOO_MANY_EXTENSIONS);
        }
        seen[n_seen++] = (uint16_t)type;
        if (type == EXT_ECH) {
            res->has_ech = true;
        }
        if (!rd_block(rd, ext_end, 2, false, &data_end)) {
            return false;
        }
        switch (type) {
        case EXT_SERVER_NAME:
            if (!parse_server_name(rd, data_end, scratch, res, has_name)) {
                return false;
            }
            break;
        case EXT_ALPN:
            if (!parse_alpn(rd, data_end, scratch, res)) {
                return false;
            }
            break;
        case EXT_SUPPORTED_VERSIONS:
            if (!parse_supported_versions(rd, data_end, res)) {
                return false;
            }
            break;
        default: /* ECH included: its contents are for the backend */
            if (!rd_skip(rd, data_end, data_end - rd->hs_got)) {
                return false;
            }
            break;
        }
        /* Each parser above closes its blocks exactly, so this only guards the code. */
        if (rd->hs_got != data_end) {
            return rd_malformed(rd, SR_HELLO_REASON_BLOCK_END);
        }
    }
    return true;
}

/* Both entry points: <rd> is set up for framed records or for a bare message. */
static void
parse_run(struct rd *rd, struct sr_hello_scratch *scratch, struct sr_hello_result *res)
{
    bool has_name = false;

    memset(res, 0, sizeof(*res));
    if (!parse_hello(rd, scratch, res, &has_name)) {
        enum sr_name_error name_error = res->name_error;

        /* A failed parse reports only status, reason (and name_error, need): no half-read
         * views or versions that a caller might mistake for an answer. */
        memset(res, 0, sizeof(*res));
        res->status = rd->status;
        res->reason = rd->reason;
        if (rd->status == SR_HELLO_NEED_MORE) {
            res->need = rd->need;
        }
        if (rd->reason == SR_HELLO_REASON_SNI_NAME) {
            res->name_error = name_error;
        }
        return;
    }
    /* rd_record() refused any record reaching past the message, so we stand at a record's
     * end: everything up to here is the hello and its framing. */
    res->status = has_name ? SR_HELLO_FOUND : SR_HELLO_NO_SNI;
    if (res->max_version == 0) { /* no supported_versions, or only GREASE in it */
        res->max_version = res->legacy_version;
    }
    res->hello_len = rd->pos;
    res->n_records = rd->n_records;
    res->record_version = rd->record_version;
}

void
sr_hello_parse(const uint8_t *buf, size_t len, struct sr_hello_scratch *scratch,
               struct sr_hello_result *res)
{
    struct rd rd;

    memset(&rd, 0, sizeof(rd));
    rd.buf = buf;
    rd.len = len;
    rd.hs_total = TLS_HS_HEADER;
    parse_run(&rd, scratch, res);
}

void
sr_hello_parse_message(const uint8_t *buf, size_t len, struct sr_hello_result *res)
{
    struct sr_hello_scratch unused; /* never written: without records nothing straddles */
    struct rd rd;

    memset(&rd, 0, sizeof(rd));
    rd.buf = buf;
    rd.len = len;
    rd.hs_total = TLS_HS_HEADER;
    rd.bare = true;
    rd.body_left = SIZE_MAX; /* one body with no end, so rd_record() is never reached */
    parse_run(&rd, &unused, res);
}

bool
sr_hello_alpn_next(struct sr_view *cursor, struct sr_view *proto)
{
    size_t n;

    if (cursor->len == 0) {
        return false;
    }
    n = cursor->ptr[0];
    if (n == 0 || n > cursor->len - 1) {
        return false;
    }
    proto->ptr = cursor->ptr + 1;
    proto->len = n;
    cursor->ptr += 1 + n;
    cursor->len -= 1 + n;
    return true;
}

const char *
sr_hello_status_str(enum sr_hello_status s)
{
    switch (s) {
    case SR_HELLO_NEED_MORE:
        return "need_more";
    case SR_HELLO_FOUND:
        return "found";
    case SR_HELLO_NO_SNI:
        return "no_sni";
    case SR_HELLO_NOT_TLS:
        return "not_tls";
    case SR_HELLO_MALFORMED:
        return "malformed";
    }
    return "unknown";
}

const char *
sr_hello_reason_str(enum sr_hello_reason r)
{
    switch (r) {
    case SR_HELLO_REASON_NONE:
        return "none";
    case SR_HELLO_REASON_NOT_HANDSHAKE:
        return "first byte is not a TLS handshake record";
    case SR_HELLO_REASON_NOT_TLS_VERSION:
        return "record version is not TLS";
    case SR_HELLO_REASON_RECORD_EMPTY:
        return "empty record";
    case SR_HELLO_REASON_RECORD_TOO_LONG:
        return "record longer than 16384 bytes";
    case SR_HELLO_REASON_RECORD_TYPE:
        return "non-handshake record inside the hello";
    case SR_HELLO_REASON_RECORD_TRAILING:
        return "record carries bytes after the hello";
    case SR_HELLO_REASON_HANDSHAKE_TYPE:
        return "handshake message is not a client_hello";
    case SR_HELLO_REASON_HANDSHAKE_TOO_LONG:
        return "handshake length over the limit";
    case SR_HELLO_REASON_OVERRUN:
        return "field runs past its parent";
    case SR_HELLO_REASON_BLOCK_END:
        return "block does not end where its parent does";
    case SR_HELLO_REASON_VERSION:
        return "client_hello version is not TLS";
    case SR_HELLO_REASON_SESSION_ID:
        return "session id longer than 32 bytes";
    case SR_HELLO_REASON_CIPHER_SUITES:
        return "cipher suite list empty or odd";
    case SR_HELLO_REASON_COMPRESSION:
        return "compression method list empty";
    case SR_HELLO_REASON_DUPLICATE_EXTENSION:
        return "duplicate extension";
    case SR_HELLO_REASON_TOO_MANY_EXTENSIONS:
        return "too many extensions";
    case SR_HELLO_REASON_SNI_LIST:
        return "empty server_name list";
    case SR_HELLO_REASON_SNI_TYPE:
        return "server_name type is not host_name";
    case SR_HELLO_REASON_SNI_MULTIPLE:
        return "more than one server name";
    case SR_HELLO_REASON_SNI_NAME:
        return "invalid host name";
    case SR_HELLO_REASON_ALPN:
        return "bad ALPN list";
    case SR_HELLO_REASON_SUPPORTED_VERSIONS:
        return "bad supported_versions list";
    }
    return "unknown reason";
}

void
sr_hello_alert_record(uint8_t out[SR_HELLO_ALERT_LEN], uint16_t record_version, uint8_t description)
{
    sr_hello_alert(out, description);
    out[1] = (uint8_t)(record_version >> 8);
    out[2] = (uint8_t)(record_version & 0xff);
}

void
sr_hello_alert(uint8_t out[SR_HELLO_ALERT_LEN], uint8_t description)
{
    out[0] = 21;   /* content type: alert */
    out[1] = 0x03; /* legacy_record_version 0x0303 (RFC 8446 5.1) */
    out[2] = 0x03;
    out[3] = 0x00; /* length: 2 */
    out[4] = 0x02;
    out[5] = 2; /* level: fatal (RFC 8446 6: all alerts but close_notify are fatal) */
    out[6] = description;
}
