/* SPDX-License-Identifier: MIT */
/* PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt): a header builder for upstream
 * connections and an incremental parser for headers a load balancer sends us. The parser is
 * a straight line from byte 0 with no state between calls, like the ClientHello reader; it
 * decides NOT_PROXY on the first byte that rules both versions out and INVALID on the first
 * byte that breaks the header, and reports nothing it has not checked. No allocation. */
#include "sniroute/wire/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/*
 * What is read, and what each field must satisfy.
 *
 * v1 (spec 2.1): one line of US-ASCII, at most 107 bytes with its CRLF
 *   "PROXY"                     5        else NOT_PROXY, decided byte by byte
 *   " TCP4 " | " TCP6 " | " UNKNOWN"     else V1_PROTOCOL; after UNKNOWN a space or the CR
 *   TCP4: SRC " " DST " " SPORT " " DPORT
 *     SRC, DST                  7..15    a dotted quad, each part 0..255 without leading
 *                                        zeros ("avoid any possible confusion with octal")
 *     SPORT, DPORT              1..5     0..65535, decimal, no leading zeros
 *   TCP6: the same, SRC and DST IPv6 (2..39, or 45 with an IPv4 tail) as inet_pton reads them
 *   UNKNOWN: anything printable up to the CRLF, ignored ("the receiver must ignore anything
 *                                        presented before the CRLF")
 *   "\r\n"                      2        a lone CR or LF is refused (V1_EOL)
 *
 * v2 (spec 2.2), all integers in network order
 *   sig                         12       0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A, else NOT_PROXY
 *   ver_cmd                     1        high nibble 2; low nibble 0 LOCAL or 1 PROXY
 *   fam                         1        00 UNSPEC, 11 TCP4, 12 UDP4, 21 TCP6, 22 UDP6,
 *                                        31 UNIX stream, 32 UNIX dgram; nothing else
 *   len                         2        bytes after these 16; at least the address block
 *                                        (PROXY), at most the block plus V2_TLV_MAX
 *   addresses                   0/12/36/216  src addr, dst addr, src port, dst port
 *   TLVs, to the end of len:
 *     type                      1
 *     length                    2        the value must fit in what is left of the header
 *     value                     length   AUTHORITY (0x02): once, reported as a view;
 *                                        CRC32C (0x03): once, 4 bytes, verified;
 *                                        SSL (0x20): client 1, verify 4, then sub-TLVs that
 *                                        end exactly with the value; others: skipped
 */

#define V1_SIG          "PROXY"
#define V1_SIG_LEN      5
#define V1_TCP_FIELDS   11 /* where the fields of a TCP4/TCP6 line start */
#define V1_UNKNOWN_REST 13 /* "PROXY UNKNOWN" */

/* The shortest valid line of each kind, for <need>. */
#define V1_MIN_ANY     15 /* "PROXY UNKNOWN\r\n" */
#define V1_MIN_TCP4    32 /* "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n" */
#define V1_MIN_TCP6    22 /* "PROXY TCP6 :: :: 0 0\r\n" */
#define V1_MIN_UNKNOWN 15

/* Longest address text we decode: INET6_ADDRSTRLEN - 1 (an IPv6 with an IPv4 tail). */
#define V1_ADDR_MAX 45

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define PP2_VERSION       0x20
#define PP2_CMD_LOCAL     0x00
#define PP2_CMD_PROXY     0x01
#define PP2_FAM_UNSPEC    0x00
#define PP2_FAM_TCP4      0x11
#define PP2_FAM_TCP6      0x21
#define PP2_ADDR_LEN_INET 12
#define PP2_ADDR_LEN_IN6  36
#define PP2_ADDR_LEN_UNIX 216

#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_CRC32C    0x03
#define PP2_TYPE_SSL       0x20
#define PP2_TLV_HEADER     3
#define PP2_SSL_FIXED      5 /* client (1) and verify (4) before the sub-TLVs */

enum v1_kind {
    V1_TCP4,
    V1_TCP6,
    V1_UNKNOWN,
};

static void
set_fail(struct sr_proxyproto_result *res, enum sr_proxyproto_status status,
         enum sr_proxyproto_reason reason)
{
    res->status = status;
    res->reason = reason;
}

static void
set_invalid(struct sr_proxyproto_result *res, enum sr_proxyproto_reason reason)
{
    set_fail(res, SR_PROXYPROTO_INVALID, reason);
}

static void
set_need(struct sr_proxyproto_result *res, size_t need)
{
    res->status = SR_PROXYPROTO_NEED_MORE;
    res->need = need > 0 ? need : 1;
}

/* ---- v1 ---------------------------------------------------------------------------- */

static bool
v1_allowed(enum v1_kind kind, uint8_t c)
{
    if (c == ' ' || (c >= '0' && c <= '9') || c == '.') {
        return true;
    }
    switch (kind) {
    case V1_TCP4:
        return false;
    case V1_TCP6:
        return c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    case V1_UNKNOWN:
        return c > ' ' && c < 0x7f;
    }
    return false;
}

/* A port: "0", or 1..65535 without a leading zero. */
static bool
v1_port(const uint8_t *s, size_t len, uint16_t *out)
{
    uint32_t v = 0;
    size_t i;

    if (len == 0 || len > 5 || (len > 1 && s[0] == '0')) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* An address of the line's family into <*ss>. The character scan has already limited the
 * text to digits, dots and (TCP6) hex and colons; inet_pton() does the rest, and glibc's
 * refuses leading zeros in a dotted quad as the spec wants (pinned by a test). */
static bool
v1_addr(enum v1_kind kind, const uint8_t *s, size_t len, struct sockaddr_storage *ss)
{
    char text[V1_ADDR_MAX + 1];

    if (len > V1_ADDR_MAX) {
        return false;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    if (kind == V1_TCP4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
    }
}

static void
set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    }
}

/* The fields of a TCP4/TCP6 line, <s>/<len> between the keyword and the CRLF. */
static void
v1_fields(enum v1_kind kind, const uint8_t *s, size_t len, struct sr_proxyproto_result *res)
{
    size_t start[4];
    size_t flen[4];
    size_t n = 0;
    size_t i = 0;
    uint16_t sport;
    uint16_t dport;

    for (;;) {
        start[n] = i;
        while (i < len && s[i] != ' ') {
            i++;
        }
        flen[n] = i - start[n];
        if (flen[n] == 0) {
            set_invalid(res, SR_PROXYPROTO_REASON_V1_FIELDS); /* a double or edge space */
            return;
        }
        n++;
        if (i == len) {
            break;
        }
        if (n == 4) {
            set_invalid(res, SR_PROXYPROTO_REASON_V1_FIELDS); /* a fifth field */
            return;
        }
        i++; /* the single space */
    }
    if (n != 4) {
        set_invalid(res, SR_PROXYPROTO_REASON_V1_FIELDS);
        return;
    }
    if (!v1_addr(kind, s + start[0], flen[0], &res->src) ||
        !v1_addr(kind, s + start[1], flen[1], &res->dst)) {
        set_invalid(res, SR_PROXYPROTO_REASON_V1_ADDRESS);
        return;
    }
    if (!v1_port(s + start[2], flen[2], &sport) || !v1_port(s + start[3], flen[3], &dport)) {
        set_invalid(res, SR_PROXYPROTO_REASON_V1_PORT);
        return;
    }
    set_port(&res->src, sport);
    set_port(&res->dst, dport);
    res->status = SR_PROXYPROTO_OK;
    res->family = kind == V1_TCP4 ? SR_PROXYPROTO_FAMILY_TCP4 : SR_PROXYPROTO_FAMILY_TCP6;
}

static void
parse_v1(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res)
{
    static const struct {
        const char *text;
        size_t len;
        enum v1_kind kind;
        size_t min;
    } kw[] = {
        {" TCP4 ", 6, V1_TCP4, V1_MIN_TCP4},
        {" TCP6 ", 6, V1_TCP6, V1_MIN_TCP6},
        {" UNKNOWN", 8, V1_UNKNOWN, V1_MIN_UNKNOWN},
    };
    size_t have = len - V1_SIG_LEN; /* bytes after "PROXY" */
    const uint8_t *p = buf + V1_SIG_LEN;
    bool alive = false;
    enum v1_kind kind = V1_UNKNOWN;
    size_t min = V1_MIN_ANY;
    size_t i;
    size_t start;

    /* The keyword: no keyword is a prefix of another, so at most one completes. */
    for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
        size_t n = have < kw[i].len ? have : kw[i].len;
        if (memcmp(p, kw[i].text, n) == 0) {
            alive = true;
            if (n == kw[i].len) {
                kind = kw[i].kind;
                min = kw[i].min;
                break;
            }
        }
    }
    if (!alive) {
        set_invalid(res, SR_PROXYPROTO_REASON_V1_PROTOCOL);
        return;
    }
    if (i == sizeof(kw) / sizeof(kw[0])) {
        set_need(res, V1_MIN_ANY - len);
        return;
    }
    start = kind == V1_UNKNOWN ? V1_UNKNOWN_REST : V1_TCP_FIELDS;
    if (kind == V1_UNKNOWN && len > start && buf[start] != ' ' && buf[start] != '\r' &&
        buf[start] != '\n') {
        set_invalid(res, SR_PROXYPROTO_REASON_V1_PROTOCOL); /* "PROXY UNKNOWNX"; LF: V1_EOL */
        return;
    }

    /* Scan to the CRLF, refusing each byte as it arrives if it cannot be part of the line.
     * Each verdict depends only on the bytes up to the next one, so a prefix never
     * answers differently from the whole. */
    for (i = start; i < len; i++) {
        uint8_t c = buf[i];

        if (c == '\r') {
            if (i + 1 == len) {
                set_need(res, 1);
                return;
            }
            if (buf[i + 1] != '\n') {
                set_invalid(res, SR_PROXYPROTO_REASON_V1_EOL);
                return;
            }
            break;
        }
        if (i >= SR_PROXYPROTO_V1_MAX - 2) {
            set_invalid(res, SR_PROXYPROTO_REASON_V1_TOO_LONG); /* no room left for CRLF */
            return;
        }
        if (c == '\n') {
            set_invalid(res, SR_PROXYPROTO_REASON_V1_EOL);
            return;
        }
        if (!v1_allowed(kind, c)) {
            set_invalid(res, SR_PROXYPROTO_REASON_V1_CHARACTER);
            return;
        }
    }
    if (i == len) {
        /* No CRLF yet, and the last byte is not a CR: at least CR LF are still to come. */
        set_need(res, min > len + 2 ? min - len : 2);
        return;
    }

    res->header_len = i + 2;
    res->version = 1;
    res->command = SR_PROXYPROTO_CMD_PROXY;
    if (kind == V1_UNKNOWN) {
        res->status = SR_PROXYPROTO_OK;
        res->family = SR_PROXYPROTO_FAMILY_UNSPEC;
        return;
    }
    v1_fields(kind, buf + start, i - start, res); /* on failure, the caller clears the rest */
}

/* ---- v2 ---------------------------------------------------------------------------- */

/* CRC32c (Castagnoli, RFC 4960 appendix B) of <len> bytes, with the 4 bytes at <hole>
 * counted as zero, as the spec's PP2_TYPE_CRC32C asks. Bitwise: the header is at most
 * about 1.3 KiB and is checked once per connection, so a table is not worth its cache. */
static uint32_t
crc32c(const uint8_t *buf, size_t len, size_t hole)
{
    uint32_t crc = 0xffffffffu;
    size_t i;
    int k;

    for (i = 0; i < len; i++) {
        uint8_t b = (i >= hole && i < hole + 4) ? 0 : buf[i];
        crc ^= b;
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* The address block's size for a fam byte, or -1 if the spec does not define the byte. */
static int
v2_addr_len(uint8_t fam)
{
    switch (fam) {
    case 0x00:
        return 0;
    case 0x11:
    case 0x12:
        return PP2_ADDR_LEN_INET;
    case 0x21:
    case 0x22:
        return PP2_ADDR_LEN_IN6;
    case 0x31:
    case 0x32:
        return PP2_ADDR_LEN_UNIX;
    }
    return -1;
}

/* Sub-TLVs of PP2_TYPE_SSL in <v>/<len> (after client and verify) must tile it exactly. */
static bool
v2_ssl_ok(const uint8_t *v, size_t len)
{
    size_t pos = PP2_SSL_FIXED;

    if (len < PP2_SSL_FIXED) {
        return false;
    }
    while (pos < len) {
        size_t l;
        if (len - pos < PP2_TLV_HEADER) {
            return false;
        }
        l = (size_t)v[pos + 1] << 8 | v[pos + 2];
        if (l > len - pos - PP2_TLV_HEADER) {
            return false;
        }
        pos += PP2_TLV_HEADER + l;
    }
    return true;
}

/* Walk the TLVs in buf[pos, end). */
static void
v2_tlvs(const uint8_t *buf, size_t pos, size_t end, struct sr_proxyproto_result *res)
{
    bool has_crc = false;
    size_t crc_at = 0;

    while (pos < end) {
        uint8_t type;
        size_t l;
        const uint8_t *v;

        if (end - pos < PP2_TLV_HEADER) {
            set_invalid(res, SR_PROXYPROTO_REASON_V2_TLV);
            return;
        }
        type = buf[pos];
        l = (size_t)buf[pos + 1] << 8 | buf[pos + 2];
        if (l > end - pos - PP2_TLV_HEADER) {
            set_invalid(res, SR_PROXYPROTO_REASON_V2_TLV);
            return;
        }
        v = buf + pos + PP2_TLV_HEADER;
        switch (type) {
        case PP2_TYPE_AUTHORITY:
            if (res->has_authority) {
                set_invalid(res, SR_PROXYPROTO_REASON_V2_DUPLICATE);
                return;
            }
            res->has_authority = true;
            res->authority = v;
            res->authority_len = l;
            break;
        case PP2_TYPE_CRC32C:
            if (has_crc) {
                set_invalid(res, SR_PROXYPROTO_REASON_V2_DUPLICATE);
                return;
            }
            if (l != 4) {
                set_invalid(res, SR_PROXYPROTO_REASON_V2_CRC32C_LEN);
                return;
            }
            has_crc = true;
            crc_at = pos + PP2_TLV_HEADER;
            break;
        case PP2_TYPE_SSL:
            if (!v2_ssl_ok(v, l)) {
                set_invalid(res, SR_PROXYPROTO_REASON_V2_SSL);
                return;
            }
            break;
        default:
            break; /* NOOP, ALPN, UNIQUE_ID, NETNS, custom: not ours to judge */
        }
        pos += PP2_TLV_HEADER + l;
    }
    if (has_crc) {
        const uint8_t *c = buf + crc_at;
        uint32_t want = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        if (crc32c(buf, end, crc_at) != want) {
            set_invalid(res, SR_PROXYPROTO_REASON_V2_CRC32C);
            return;
        }
    }
    res->status = SR_PROXYPROTO_OK;
}

static void
parse_v2(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res)
{
    uint8_t cmd;
    uint8_t fam;
    int addr_len;
    size_t hlen;
    size_t total;

    if (len < sizeof(v2_sig)) {
        set_need(res, 1); /* each signature byte may still say NOT_PROXY */
        return;
    }
    if (len > 12) {
        if ((buf[12] & 0xf0) != PP2_VERSION) {
            set_invalid(res, SR_PROXYPROTO_REASON_V2_VERSION);
            return;
        }
        if ((buf[12] & 0x0f) > PP2_CMD_PROXY) {
            set_invalid(res, SR_PROXYPROTO_REASON_V2_COMMAND);
            return;
        }
    }
    if (len > 13 && v2_addr_len(buf[13]) < 0) {
        set_invalid(res, SR_PROXYPROTO_REASON_V2_FAMILY);
        return;
    }
    if (len < SR_PROXYPROTO_V2_HEADER) {
        set_need(res, SR_PROXYPROTO_V2_HEADER - len);
        return;
    }
    cmd = buf[12] & 0x0f;
    fam = buf[13];
    addr_len = v2_addr_len(fam);
    hlen = (size_t)buf[14] << 8 | buf[15];
    if (cmd == PP2_CMD_PROXY && hlen < (size_t)addr_len) {
        set_invalid(res, SR_PROXYPROTO_REASON_V2_ADDRESS_LEN);
        return;
    }
    if (hlen > (size_t)addr_len + SR_PROXYPROTO_V2_TLV_MAX) {
        set_invalid(res, SR_PROXYPROTO_REASON_V2_TOO_LONG);
        return;
    }
    total = SR_PROXYPROTO_V2_HEADER + hlen;
    if (len < total) {
        set_need(res, total - len);
        return;
    }

    res->header_len = total;
    res->version = 2;
    res->family = SR_PROXYPROTO_FAMILY_UNSPEC;
    if (cmd == PP2_CMD_LOCAL || fam == PP2_FAM_UNSPEC) {
        /* Spec: LOCAL "must discard the protocol block including the family"; with
         * AF_UNSPEC the receiver "should ignore address information". Either way the block
         * has no defined layout to walk TLVs in. */
        res->command = cmd == PP2_CMD_LOCAL ? SR_PROXYPROTO_CMD_LOCAL : SR_PROXYPROTO_CMD_PROXY;
        res->status = SR_PROXYPROTO_OK;
        return;
    }
    res->command = SR_PROXYPROTO_CMD_PROXY;
    if (fam == PP2_FAM_TCP4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&res->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&res->dst;
        const uint8_t *a = buf + SR_PROXYPROTO_V2_HEADER;
        s->sin_family = AF_INET;
        d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        res->family = SR_PROXYPROTO_FAMILY_TCP4;
    } else if (fam == PP2_FAM_TCP6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&res->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&res->dst;
        const uint8_t *a = buf + SR_PROXYPROTO_V2_HEADER;
        s->sin6_family = AF_INET6;
        d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        res->family = SR_PROXYPROTO_FAMILY_TCP6;
    }
    /* UDP and AF_UNIX: the spec allows falling back to UNSPEC; their TLVs are still walked,
     * since the block's size is defined. */
    v2_tlvs(buf, SR_PROXYPROTO_V2_HEADER + (size_t)addr_len, total, res);
}

void
sr_proxyproto_parse(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res)
{
    memset(res, 0, sizeof(*res));
    if (len == 0) {
        set_need(res, 1);
    } else if (buf[0] == 'P') {
        size_t n = len < V1_SIG_LEN ? len : V1_SIG_LEN;
        if (memcmp(buf, V1_SIG, n) != 0) {
            set_fail(res, SR_PROXYPROTO_NOT_PROXY, SR_PROXYPROTO_REASON_SIGNATURE);
        } else if (len <= V1_SIG_LEN) {
            set_need(res, len < V1_SIG_LEN ? 1 : V1_MIN_ANY - len);
        } else {
            parse_v1(buf, len, res);
        }
    } else if (buf[0] == v2_sig[0]) {
        size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
        if (memcmp(buf, v2_sig, n) != 0) {
            set_fail(res, SR_PROXYPROTO_NOT_PROXY, SR_PROXYPROTO_REASON_SIGNATURE);
        } else {
            parse_v2(buf, len, res);
        }
    } else {
        set_fail(res, SR_PROXYPROTO_NOT_PROXY, SR_PROXYPROTO_REASON_SIGNATURE);
    }
    if (res->status != SR_PROXYPROTO_OK) {
        /* Only OK reports a header; a failed parse may have filled some fields. */
        enum sr_proxyproto_status status = res->status;
        enum sr_proxyproto_reason reason = res->reason;
        size_t need = res->need;
        memset(res, 0, sizeof(*res));
        res->status = status;
        res->reason = reason;
        res->need = need;
    }
}

/* ---- building ------------------------------------------------------------------------ */

/* <sa>'s address and port (network order) as IPv6, an AF_INET one v4-mapped. */
static void
as_v6(const struct sockaddr *sa, uint8_t addr[16], uint8_t port[2])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memset(addr, 0, 10);
        addr[10] = 0xff;
        addr[11] = 0xff;
        memcpy(addr + 12, &sin->sin_addr, 4);
        memcpy(port, &sin->sin_port, 2);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        memcpy(addr, &sin6->sin6_addr, 16);
        memcpy(port, &sin6->sin6_port, 2);
    }
}

static bool
is_inet(const struct sockaddr *sa)
{
    return sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

static size_t
put_str(char *line, size_t n, const char *s)
{
    size_t l = strlen(s);
    memcpy(line + n, s, l);
    return n + l;
}

static size_t
put_port(char *line, size_t n, const uint8_t port[2])
{
    unsigned v = (unsigned)port[0] << 8 | port[1];
    char digits[5];
    size_t nd = 0;

    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (nd > 0) {
        line[n++] = digits[--nd];
    }
    return n;
}

size_t
sr_proxyproto_build_v1(char *out, size_t cap, const struct sockaddr *src,
                       const struct sockaddr *dst)
{
    char line[SR_PROXYPROTO_V1_MAX + 1];
    char text[INET6_ADDRSTRLEN];
    uint8_t addr[2][16];
    uint8_t port[2][2];
    bool v4;
    size_t n = 0;
    int k;

    if (!is_inet(src) || !is_inet(dst)) {
        n = put_str(line, 0, "PROXY UNKNOWN\r\n");
    } else {
        v4 = src->sa_family == AF_INET && dst->sa_family == AF_INET;
        as_v6(src, addr[0], port[0]);
        as_v6(dst, addr[1], port[1]);
        n = put_str(line, n, v4 ? "PROXY TCP4" : "PROXY TCP6");
        for (k = 0; k < 2; k++) {
            const void *a = v4 ? (const void *)(addr[k] + 12) : (const void *)addr[k];
            if (inet_ntop(v4 ? AF_INET : AF_INET6, a, text, sizeof(text)) == NULL) {
                return 0;
            }
            n = put_str(line, n, " ");
            n = put_str(line, n, text);
        }
        for (k = 0; k < 2; k++) {
            n = put_str(line, n, " ");
            n = put_port(line, n, port[k]);
        }
        n = put_str(line, n, "\r\n");
    }
    if (n > cap) {
        return 0;
    }
    memcpy(out, line, n);
    return n;
}

size_t
sr_proxyproto_build_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                       const struct sockaddr *dst, const char *authority, size_t authority_len)
{
    uint8_t h[SR_PROXYPROTO_V2_BUILD_MAX];
    size_t n = SR_PROXYPROTO_V2_HEADER;
    uint8_t addr[2][16];
    uint8_t port[2][2];

    if (authority_len > SR_PROXYPROTO_AUTHORITY_MAX) {
        return 0;
    }
    memcpy(h, v2_sig, sizeof(v2_sig));
    if (!is_inet(src) || !is_inet(dst)) {
        h[12] = PP2_VERSION | PP2_CMD_LOCAL;
        h[13] = PP2_FAM_UNSPEC;
    } else {
        as_v6(src, addr[0], port[0]);
        as_v6(dst, addr[1], port[1]);
        h[12] = PP2_VERSION | PP2_CMD_PROXY;
        if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
            h[13] = PP2_FAM_TCP4;
            memcpy(h + n, addr[0] + 12, 4);
            memcpy(h + n + 4, addr[1] + 12, 4);
            n += 8;
        } else {
            h[13] = PP2_FAM_TCP6;
            memcpy(h + n, addr[0], 16);
            memcpy(h + n + 16, addr[1], 16);
            n += 32;
        }
        memcpy(h + n, port[0], 2);
        memcpy(h + n + 2, port[1], 2);
        n += 4;
    }
    if (authority_len > 0) {
        h[n] = PP2_TYPE_AUTHORITY;
        h[n + 1] = (uint8_t)(authority_len >> 8);
        h[n + 2] = (uint8_t)authority_len;
        memcpy(h + n + PP2_TLV_HEADER, authority, authority_len);
        n += PP2_TLV_HEADER + authority_len;
    }
    h[14] = (uint8_t)((n - SR_PROXYPROTO_V2_HEADER) >> 8);
    h[15] = (uint8_t)(n - SR_PROXYPROTO_V2_HEADER);
    if (n > cap) {
        return 0;
    }
    memcpy(out, h, n);
    return n;
}

const char *
sr_proxyproto_status_str(enum sr_proxyproto_status s)
{
    switch (s) {
    case SR_PROXYPROTO_NEED_MORE:
        return "need_more";
    case SR_PROXYPROTO_OK:
        return "ok";
    case SR_PROXYPROTO_NOT_PROXY:
        return "not_proxy";
    case SR_PROXYPROTO_INVALID:
        return "invalid";
    }
    return "unknown";
}

const char *
sr_proxyproto_reason_str(enum sr_proxyproto_reason r)
{
    switch (r) {
    case SR_PROXYPROTO_REASON_NONE:
        return "none";
    case SR_PROXYPROTO_REASON_SIGNATURE:
        return "no PROXY protocol signature";
    case SR_PROXYPROTO_REASON_V1_PROTOCOL:
        return "v1: not TCP4, TCP6 or UNKNOWN";
    case SR_PROXYPROTO_REASON_V1_TOO_LONG:
        return "v1: no CRLF within 107 bytes";
    case SR_PROXYPROTO_REASON_V1_EOL:
        return "v1: CR or LF alone";
    case SR_PROXYPROTO_REASON_V1_CHARACTER:
        return "v1: unexpected character";
    case SR_PROXYPROTO_REASON_V1_FIELDS:
        return "v1: not four fields separated by single spaces";
    case SR_PROXYPROTO_REASON_V1_ADDRESS:
        return "v1: bad address for the family";
    case SR_PROXYPROTO_REASON_V1_PORT:
        return "v1: bad port";
    case SR_PROXYPROTO_REASON_V2_VERSION:
        return "v2: version is not 2";
    case SR_PROXYPROTO_REASON_V2_COMMAND:
        return "v2: command is neither LOCAL nor PROXY";
    case SR_PROXYPROTO_REASON_V2_FAMILY:
        return "v2: undefined address family or transport";
    case SR_PROXYPROTO_REASON_V2_TOO_LONG:
        return "v2: header longer than the TLV cap";
    case SR_PROXYPROTO_REASON_V2_ADDRESS_LEN:
        return "v2: length shorter than the address block";
    case SR_PROXYPROTO_REASON_V2_TLV:
        return "v2: TLV runs past the header";
    case SR_PROXYPROTO_REASON_V2_DUPLICATE:
        return "v2: AUTHORITY or CRC32C TLV repeated";
    case SR_PROXYPROTO_REASON_V2_SSL:
        return "v2: malformed SSL TLV";
    case SR_PROXYPROTO_REASON_V2_CRC32C_LEN:
        return "v2: CRC32C TLV is not 4 bytes";
    case SR_PROXYPROTO_REASON_V2_CRC32C:
        return "v2: CRC32C mismatch";
    }
    return "unknown";
}
