/* SPDX-License-Identifier: MIT */
/* Table-driven tests of address parsing: each input maps to an error, or to a kind, host,
 * port and the text sr_addr_format gives back. */
#include "sniroute/config/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "support/assert.h"

struct addr_case {
    const char *in;
    size_t len; /* 0: use strlen(in) */
    enum sr_addr_error err;
    enum sr_addr_kind kind;
    const char *host;
    uint16_t port;
    const char *formatted;
};

#define OK(in, kind, host, port, fmt)                                                              \
    {                                                                                              \
        in, 0, SR_ADDR_OK, kind, host, port, fmt                                                   \
    }
#define BAD(in, err)                                                                               \
    {                                                                                              \
        in, 0, err, SR_ADDR_IPV4, NULL, 0, NULL                                                    \
    }

static const struct addr_case cases[] = {
    OK("127.0.0.1:9001", SR_ADDR_IPV4, "127.0.0.1", 9001, "127.0.0.1:9001"),
    OK("0.0.0.0:1", SR_ADDR_IPV4, "0.0.0.0", 1, "0.0.0.0:1"),
    OK("255.255.255.255:65535", SR_ADDR_IPV4, "255.255.255.255", 65535, "255.255.255.255:65535"),
    OK("[::]:8443", SR_ADDR_IPV6, "::", 8443, "[::]:8443"),
    OK("[::1]:443", SR_ADDR_IPV6, "::1", 443, "[::1]:443"),
    OK("[2001:DB8:0:0::1]:443", SR_ADDR_IPV6, "2001:db8::1", 443, "[2001:db8::1]:443"),
    OK("[::FFFF:1.2.3.4]:80", SR_ADDR_IPV6, "::ffff:1.2.3.4", 80, "[::ffff:1.2.3.4]:80"),
    OK("[fe80::1%eth0]:443", SR_ADDR_IPV6, "fe80::1%eth0", 443, "[fe80::1%eth0]:443"),
    OK("[fe80::1%2]:443", SR_ADDR_IPV6, "fe80::1%2", 443, "[fe80::1%2]:443"),
    OK("backend.internal:443", SR_ADDR_NAME, "backend.internal", 443, "backend.internal:443"),
    OK("Backend.Internal.:443", SR_ADDR_NAME, "backend.internal", 443, "backend.internal:443"),
    OK("localhost:8080", SR_ADDR_NAME, "localhost", 8080, "localhost:8080"),
    OK("_svc.x-1.example:8080", SR_ADDR_NAME, "_svc.x-1.example", 8080, "_svc.x-1.example:8080"),
    OK("1.2.3.4.example:80", SR_ADDR_NAME, "1.2.3.4.example", 80, "1.2.3.4.example:80"),
    OK("host:00080", SR_ADDR_NAME, "host", 80, "host:80"),

    BAD("", SR_ADDR_EMPTY),
    BAD("example.com", SR_ADDR_NO_PORT),
    BAD("1.2.3.4", SR_ADDR_NO_PORT),
    BAD("1.2.3.4:", SR_ADDR_NO_PORT),
    BAD("[::1]", SR_ADDR_NO_PORT),
    BAD("[::1]:", SR_ADDR_NO_PORT),
    BAD("1.2.3.4:0", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:65536", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:123456", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:0x50", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:+80", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:-1", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:https", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4:80 ", SR_ADDR_BAD_PORT),
    BAD("1.2.3.4: 80", SR_ADDR_BAD_PORT),
    BAD("[::1]:0", SR_ADDR_BAD_PORT),
    BAD("[::1", SR_ADDR_BAD_BRACKETS),
    BAD("[::1]443", SR_ADDR_BAD_BRACKETS),
    BAD("[1.2.3.4]:80", SR_ADDR_BAD_BRACKETS),
    BAD("[example.com]:80", SR_ADDR_BAD_BRACKETS),
    BAD("[]:80", SR_ADDR_BAD_BRACKETS),
    BAD("[::g]:80", SR_ADDR_BAD_IPV6),
    BAD("[1:2:3:4:5:6:7:8:9]:80", SR_ADDR_BAD_IPV6),
    BAD("[fe80::1%]:80", SR_ADDR_BAD_IPV6),
    BAD("[fe80::1%eth 0]:80", SR_ADDR_BAD_IPV6),
    BAD("[fe80::1%abcdefghijklmnop]:80", SR_ADDR_BAD_IPV6),
    BAD("::1:443", SR_ADDR_IPV6_NO_BRACKETS),
    BAD("::1", SR_ADDR_IPV6_NO_BRACKETS),
    BAD("2001:db8::1:443", SR_ADDR_IPV6_NO_BRACKETS),
    BAD("a:b:443", SR_ADDR_BAD_HOST),
    BAD(":443", SR_ADDR_BAD_HOST),
    BAD(" 1.2.3.4:80", SR_ADDR_BAD_HOST),
    BAD("1.2.3.256:80", SR_ADDR_BAD_HOST), /* not a literal, and a numeric TLD */
    BAD("01.2.3.4:80", SR_ADDR_BAD_HOST),  /* inet_aton would read octal */
    BAD("127.1:80", SR_ADDR_BAD_HOST),
    BAD("0x7f000001:80", SR_ADDR_BAD_HOST),
    BAD("10.0.0:80", SR_ADDR_BAD_HOST),
    BAD("a..b:80", SR_ADDR_BAD_HOST),
    BAD("exa mple.com:80", SR_ADDR_BAD_HOST),
    BAD("*.example.com:80", SR_ADDR_BAD_HOST),
    BAD("host/x:80", SR_ADDR_BAD_HOST),
    BAD("caf\xc3\xa9.example:80", SR_ADDR_BAD_HOST),
    {"a\0b:80", 6, SR_ADDR_BAD_HOST, SR_ADDR_IPV4, NULL, 0, NULL},
};

static void
test_table(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct addr_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        struct sr_addr a;
        char out[SR_ADDR_HOST_MAX + 16];
        enum sr_addr_error err = sr_addr_parse(c->in, len, &a);

        if (err != c->err) {
            SR_FAIL("\"%s\": %s, want %s", c->in, sr_addr_error_str(err),
                    sr_addr_error_str(c->err));
        }
        if (err != SR_ADDR_OK) {
            continue;
        }
        ASSERT_EQ(a.kind, c->kind);
        ASSERT_STR_EQ(a.host, c->host);
        ASSERT_EQ(a.port, c->port);
        ASSERT_EQ(sr_addr_format(&a, out, sizeof(out)), strlen(c->formatted));
        ASSERT_STR_EQ(out, c->formatted);
    }
}

static void
test_not_terminated(void)
{
    struct sr_addr a;

    /* Only <len> bytes count: the rest of the buffer is never read. */
    ASSERT_EQ(sr_addr_parse("10.0.0.1:443garbage", 12, &a), SR_ADDR_OK);
    ASSERT_EQ(a.port, 443);
    ASSERT_EQ(sr_addr_parse("[::1]:443]", 9, &a), SR_ADDR_OK);
    ASSERT_EQ(sr_addr_parse("[::1]:443", 5, &a), SR_ADDR_NO_PORT);
}

static void
test_format_truncation(void)
{
    struct sr_addr a;
    char out[8];

    ASSERT_EQ(sr_addr_parse("[2001:db8::1]:443", 17, &a), SR_ADDR_OK);
    /* snprintf rules: the length needed comes back, the output is cut and terminated. */
    ASSERT_EQ(sr_addr_format(&a, out, sizeof(out)), 17);
    ASSERT_STR_EQ(out, "[2001:d");
}

/* Socket addresses as the access log and the notices show them. */
static void
test_format_sockaddr(void)
{
    static const struct {
        int family;
        const char *ip;
        uint16_t port;
        const char *text;
    } sockaddr_cases[] = {
        {AF_INET, "127.0.0.1", 443, "127.0.0.1:443"},
        {AF_INET, "255.255.255.255", 65535, "255.255.255.255:65535"},
        {AF_INET6, "::1", 8443, "[::1]:8443"},
        {AF_INET6, "2001:DB8:0:0:1::1", 1, "[2001:db8::1:0:0:1]:1"},
        {AF_INET6, "::ffff:192.0.2.1", 80, "[::ffff:192.0.2.1]:80"},
        {AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
    };
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    char out[SR_SOCKADDR_TEXT_MAX];
    char small[6];
    size_t i;

    for (i = 0; i < sizeof(sockaddr_cases) / sizeof(sockaddr_cases[0]); i++) {
        memset(&ss, 0, sizeof(ss));
        ss.ss_family = (sa_family_t)sockaddr_cases[i].family;
        if (sockaddr_cases[i].family == AF_INET) {
            ASSERT_EQ(inet_pton(AF_INET, sockaddr_cases[i].ip, &sin->sin_addr), 1);
            sin->sin_port = htons(sockaddr_cases[i].port);
        } else {
            ASSERT_EQ(inet_pton(AF_INET6, sockaddr_cases[i].ip, &sin6->sin6_addr), 1);
            sin6->sin6_port = htons(sockaddr_cases[i].port);
        }
        memset(out, 'x', sizeof(out));
        sr_addr_format_sockaddr((const struct sockaddr *)&ss, out, sizeof(out));
        ASSERT_STR_EQ(out, sockaddr_cases[i].text);
    }
    /* Another family (or none: a peer the kernel did not name) is "-". */
    memset(&ss, 0, sizeof(ss));
    sr_addr_format_sockaddr((const struct sockaddr *)&ss, out, sizeof(out));
    ASSERT_STR_EQ(out, "-");
    ss.ss_family = AF_UNIX;
    sr_addr_format_sockaddr((const struct sockaddr *)&ss, out, sizeof(out));
    ASSERT_STR_EQ(out, "-");
    /* Cut short and terminated when <cap> is too small. */
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::1", &sin6->sin6_addr), 1);
    sr_addr_format_sockaddr((const struct sockaddr *)&ss, small, sizeof(small));
    ASSERT_STR_EQ(small, "[2001");
}

static void
test_long_names(void)
{
    char buf[300];
    struct sr_addr a;
    size_t i;

    for (i = 0; i < 253; i++) {
        buf[i] = (i % 10 == 9) ? '.' : 'h';
    }
    buf[252] = 'x';
    memcpy(buf + 253, ":443", 4);
    ASSERT_EQ(sr_addr_parse(buf, 257, &a), SR_ADDR_OK);
    ASSERT_EQ(strlen(a.host), 253);
    buf[253] = 'y';
    memcpy(buf + 254, ":443", 4);
    ASSERT_EQ(sr_addr_parse(buf, 258, &a), SR_ADDR_BAD_HOST);
    ASSERT_STR_EQ(sr_addr_error_str(SR_ADDR_BAD_PORT), "port must be 1..65535");
}

static void
test_listen_port_zero(void)
{
    struct sr_addr a;

    /* Only a listening address may ask the kernel for a port. */
    ASSERT_EQ(sr_addr_parse("127.0.0.1:0", 11, &a), SR_ADDR_BAD_PORT);
    ASSERT_EQ(sr_addr_parse_listen("127.0.0.1:0", 11, &a), SR_ADDR_OK);
    ASSERT_EQ(a.kind, SR_ADDR_IPV4);
    ASSERT_EQ(a.port, 0);
    ASSERT_EQ(sr_addr_parse_listen("[::1]:0", 7, &a), SR_ADDR_OK);
    ASSERT_EQ(a.kind, SR_ADDR_IPV6);
    ASSERT_EQ(sr_addr_parse_listen("127.0.0.1:65536", 15, &a), SR_ADDR_BAD_PORT);
    ASSERT_EQ(sr_addr_parse_listen("127.0.0.1:443", 13, &a), SR_ADDR_OK);
    ASSERT_EQ(a.port, 443);
}

int
main(void)
{
    test_table();
    test_not_terminated();
    test_format_truncation();
    test_format_sockaddr();
    test_long_names();
    test_listen_port_zero();
    return 0;
}
