/* SPDX-License-Identifier: MIT */
/* The self-test client: for each case of sniroute/hellogen.h, one TCP connection that sends
 * the case's hello in the case's writes, then reads what comes back and calls it: a
 * ServerHello or HelloRetryRequest means the hello reached a TLS server whole; an alert,
 * EOF, reset or silence means it did not. It closes right after the ServerHello (the key
 * shares are random, so the handshake could not go on anyway). Plain non-blocking sockets
 * and poll(2): one connection at a time, every wait bounded by --timeout. The command line
 * is read here for both transports; --quic hands over to selftest_quic.c. */
#include "sniroute/cmd/selftest.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sniroute/config/addr.h"
#include "sniroute/wire/hellogen.h"
#include "sniroute/wire/quicgen.h"

#include "selftest_int.h"

#define DEFAULT_TIMEOUT_MS  5000
#define TLS_CT_ALERT        21
#define TLS_CT_HANDSHAKE    22
#define TLS_HS_SERVER_HELLO 2
/* Record header, handshake header, legacy_version, random: enough to tell HRR apart. */
#define ANSWER_LEN (5 + 4 + 2 + 32)

/* RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello with this random, SHA-256 of
 * "HelloRetryRequest". */
static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

enum verdict {
    V_SERVER_HELLO, /* reached */
    V_HRR,          /* reached: the server wants another key share */
    V_ALERT,        /* a TLS alert before any ServerHello */
    V_EOF,          /* closed without a word */
    V_RESET,
    V_TIMEOUT,     /* nothing within --timeout */
    V_NOT_TLS,     /* something answered, but not TLS */
    V_CONNECT,     /* no connection at all */
    V_LOCAL_ERROR, /* our side failed (building the hello, a socket call) */
};

struct outcome {
    enum verdict verdict;
    uint8_t alert;   /* V_ALERT: description */
    int err;         /* V_CONNECT, V_LOCAL_ERROR: errno */
    uint8_t head[8]; /* V_NOT_TLS: the first bytes */
    size_t n_head;
    uint64_t elapsed_ms;
};

/* What a miss most likely means, for the notes under the table. sniroute's own refusals
 * come first: they are what an operator testing a route will meet. */
static const char *
verdict_hint(const struct outcome *o)
{
    switch (o->verdict) {
    case V_ALERT:
        switch (o->alert) {
        case 112:
            return "no route for NAME (sniroute: no_route), or the server does not know it";
        case 40:
            return "over max_hello_size (sniroute: too_large), or refused by the server";
        case 50:
            return "judged malformed (sniroute: malformed) by something on the path";
        case 120:
            return "the server takes none of the --alpn protocols";
        }
        return "the far end refused the hello";
    case V_EOF:
        return "closed without an answer: the path drops such hellos, or no backend";
    case V_RESET:
        return "reset without an answer";
    case V_TIMEOUT:
        return "no answer in time (sniroute: hello_timeout?); try a longer --timeout";
    case V_NOT_TLS:
        return "the far end does not speak TLS";
    case V_CONNECT:
        return "could not connect";
    default:
        return NULL;
    }
}

static void
verdict_text(const struct outcome *o, char *out, size_t cap)
{
    size_t i, n;

    switch (o->verdict) {
    case V_SERVER_HELLO:
        snprintf(out, cap, "reached (ServerHello)");
        return;
    case V_HRR:
        snprintf(out, cap, "reached (HelloRetryRequest)");
        return;
    case V_ALERT:
        snprintf(out, cap, "alert %u %s", (unsigned)o->alert, sr__selftest_alert_name(o->alert));
        return;
    case V_EOF:
        snprintf(out, cap, "closed (EOF)");
        return;
    case V_RESET:
        snprintf(out, cap, "reset");
        return;
    case V_TIMEOUT:
        snprintf(out, cap, "timeout");
        return;
    case V_NOT_TLS:
        n = (size_t)snprintf(out, cap, "not a TLS answer: ");
        for (i = 0; i < o->n_head && n + 5 < cap; i++) {
            n += (size_t)snprintf(out + n, cap - n, "%02x", (unsigned)o->head[i]);
        }
        return;
    case V_CONNECT:
        snprintf(out, cap, "connect: %s", strerror(o->err));
        return;
    case V_LOCAL_ERROR:
        snprintf(out, cap, "local error: %s", strerror(o->err));
        return;
    }
}

/* A non-blocking socket connected to one of <ai>'s addresses within <timeout_ms>, or -1
 * with <*err> set. */
static int
connect_any(const struct addrinfo *ai, int timeout_ms, int *err)
{
    uint64_t deadline = sr__selftest_now_ms() + (uint64_t)timeout_ms;
    int one = 1;

    *err = ETIMEDOUT;
    for (; ai != NULL; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t len = sizeof(*err);
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            *err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            continue;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, sr__selftest_ms_left(deadline)) != 1) {
            *err = ETIMEDOUT;
            close(fd);
            continue;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) != 0 || *err != 0) {
            close(fd);
            continue;
        }
        /* Nagle off: each write of the case leaves as its own segment. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
    }
    return -1;
}

/* Wait up to <ms> for <fd> to become readable (an early answer); true if it did. */
static bool
readable_within(int fd, int ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};

    return poll(&pfd, 1, ms) == 1;
}

/* Send <p>/<n> by <deadline>. Returns 0, or an errno; EAGAIN-free. Stops early (returns
 * EALREADY) when the peer has something to say: the answer matters more than the rest. */
static int
send_all(int fd, const uint8_t *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        struct pollfd pfd = {fd, POLLOUT | POLLIN, 0};
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return errno;
        }
        if (poll(&pfd, 1, sr__selftest_ms_left(deadline)) != 1) {
            return ETIMEDOUT;
        }
        if (pfd.revents & POLLIN) {
            return EALREADY;
        }
    }
    return 0;
}

/* Read the far end's first bytes by <deadline> and judge them. */
static void
read_answer(int fd, uint64_t deadline, struct outcome *o)
{
    uint8_t buf[ANSWER_LEN];
    size_t n = 0;

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t r;

        if (n >= 1 && buf[0] == TLS_CT_ALERT && n >= 7) {
            o->verdict = V_ALERT;
            o->alert = buf[6];
            return;
        }
        if (n >= 6 && buf[0] == TLS_CT_HANDSHAKE && buf[5] == TLS_HS_SERVER_HELLO &&
            n == ANSWER_LEN) {
            o->verdict = memcmp(buf + 11, hrr_random, 32) == 0 ? V_HRR : V_SERVER_HELLO;
            return;
        }
        if (n >= 1 &&
            ((buf[0] != TLS_CT_ALERT && buf[0] != TLS_CT_HANDSHAKE) || (n >= 2 && buf[1] != 3) ||
             (n >= 6 && buf[0] == TLS_CT_HANDSHAKE && buf[5] != TLS_HS_SERVER_HELLO))) {
            break; /* not a TLS answer to a ClientHello */
        }
        if (poll(&pfd, 1, sr__selftest_ms_left(deadline)) != 1) {
            o->verdict = V_TIMEOUT;
            return;
        }
        r = recv(fd, buf + n, sizeof(buf) - n, 0);
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            continue;
        }
        if (n >= 6 && buf[0] == TLS_CT_HANDSHAKE && buf[5] == TLS_HS_SERVER_HELLO) {
            o->verdict = V_SERVER_HELLO; /* cut short, but a ServerHello all the same */
            return;
        }
        if (n == 0) {
            o->verdict = r == 0 ? V_EOF : V_RESET;
            return;
        }
        break;
    }
    o->verdict = V_NOT_TLS;
    o->n_head = n < sizeof(o->head) ? n : sizeof(o->head);
    memcpy(o->head, buf, o->n_head);
}

/* End politely after a ServerHello: a FIN, then read and drop the rest of the server's
 * flight until it closes too (for up to <ms>), so that the path sees a client that went
 * away, not a reset, and sniroute's access log says "ok" rather than "client_reset". */
static void
drain_and_close(int fd, int ms)
{
    uint64_t deadline = sr__selftest_now_ms() + (uint64_t)ms;
    uint8_t buf[4096];

    shutdown(fd, SHUT_WR);
    while (readable_within(fd, sr__selftest_ms_left(deadline))) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);

        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            break;
        }
    }
    close(fd);
}

/* One case, one connection. */
static void
run_case(const struct addrinfo *ai, const uint8_t *hello, const size_t *ends, size_t n_ends,
         const struct sr_hellogen_case *c, int timeout_ms, struct outcome *o)
{
    uint64_t start = sr__selftest_now_ms();
    size_t i, from = 0;
    int fd, rc;

    memset(o, 0, sizeof(*o));
    fd = connect_any(ai, timeout_ms, &o->err);
    if (fd < 0) {
        o->verdict = V_CONNECT;
        o->elapsed_ms = sr__selftest_now_ms() - start;
        return;
    }
    for (i = 0; i < n_ends; i++) {
        if (i > 0 && c->pause_ms > 0 && readable_within(fd, (int)c->pause_ms)) {
            break; /* answered before the hello was whole: read why */
        }
        rc = send_all(fd, hello + from, ends[i] - from,
                      sr__selftest_now_ms() + (uint64_t)timeout_ms);
        if (rc != 0) {
            break; /* EALREADY, EPIPE, ECONNRESET...: an alert may still be waiting */
        }
        from = ends[i];
    }
    read_answer(fd, sr__selftest_now_ms() + (uint64_t)timeout_ms, o);
    o->elapsed_ms = sr__selftest_now_ms() - start; /* to the verdict, not to the close */
    if (o->verdict == V_SERVER_HELLO || o->verdict == V_HRR) {
        drain_and_close(fd, timeout_ms < 1000 ? timeout_ms : 1000);
    } else {
        close(fd);
    }
}

/* "5s", "500ms", "2" (seconds): 1 ms .. 10 minutes. */
static bool
parse_duration(const char *s, int *ms)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || v <= 0) {
        return false;
    }
    if (strcmp(end, "ms") == 0) {
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        v = v <= 600 ? v * 1000 : 0;
    } else {
        return false;
    }
    if (v <= 0 || v > 600000) {
        return false;
    }
    *ms = (int)v;
    return true;
}

static void
usage(FILE *err)
{
    size_t i;

    fprintf(err, "usage: sniroute selftest [--quic] [--timeout DURATION] [--alpn P1,P2] "
                 "[--only CASE,...] HOST:PORT NAME\n"
                 "cases:");
    for (i = 0; i < sr_hellogen_n_cases; i++) {
        fprintf(err, " %s", sr_hellogen_cases[i].name);
    }
    fprintf(err, "\ncases with --quic:");
    for (i = 0; i < sr_quicgen_n_cases; i++) {
        fprintf(err, " %s", sr_quicgen_cases[i].name);
    }
    fputc('\n', err);
}

/* Options and operands from <argv>; false (after a message) on a usage error. */
static bool
parse_args(int argc, char **argv, struct sr__selftest_opts *opt, FILE *err)
{
    const char *operands[2];
    size_t n_operands = 0;
    int i;

    memset(opt, 0, sizeof(*opt));
    opt->timeout_ms = DEFAULT_TIMEOUT_MS;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--quic") == 0) {
            opt->is_quic = true;
        } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--alpn") == 0 ||
                   strcmp(a, "--only") == 0) {
            if (v == NULL) {
                fprintf(err, "sniroute selftest: %s needs a value\n", a);
                return false;
            }
            i++;
            if (strcmp(a, "--timeout") == 0 && !parse_duration(v, &opt->timeout_ms)) {
                fprintf(err, "sniroute selftest: --timeout '%s': want 1ms .. 600s, e.g. 5s\n", v);
                return false;
            }
            if (strcmp(a, "--alpn") == 0) {
                opt->alpn = v;
            } else if (strcmp(a, "--only") == 0) {
                opt->only = v;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(err, "sniroute selftest: unknown option '%s'\n", a);
            return false;
        } else if (n_operands < 2) {
            operands[n_operands++] = a;
        } else {
            fprintf(err, "sniroute selftest: unexpected argument '%s'\n", a);
            return false;
        }
    }
    if (n_operands != 2) {
        fprintf(err, "sniroute selftest: want HOST:PORT and NAME\n");
        return false;
    }
    opt->target = operands[0];
    opt->name = operands[1];
    if (opt->only != NULL) {
        char buf[256];
        char *tok, *save = NULL;

        snprintf(buf, sizeof(buf), "%s", opt->only);
        for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            if (opt->is_quic ? sr_quicgen_case_find(tok) == NULL
                             : sr_hellogen_case_find(tok) == NULL) {
                fprintf(err, "sniroute selftest: --only: no %scase '%s'\n",
                        opt->is_quic ? "QUIC " : "", tok);
                return false;
            }
        }
    }
    return true;
}

int
sr_selftest_main(int argc, char **argv, FILE *out, FILE *err)
{
    static uint8_t hello[SR_HELLOGEN_MAX_LEN];
    static size_t ends[SR_HELLOGEN_MAX_LEN];
    static struct sr_hellogen_random rnd;
    struct addrinfo hints, *ai = NULL;
    struct sr__selftest_opts opt;
    struct sr_addr addr;
    struct outcome results[16] = {0};
    const char *names[16], *miss_hints[16];
    enum sr_name_error ne;
    char port[8], text[96];
    size_t i, n_run = 0, n_reached = 0;
    int rc;

    if (!parse_args(argc, argv, &opt, err)) {
        usage(err);
        return 2;
    }
    if (sr_addr_parse(opt.target, strlen(opt.target), &addr) != SR_ADDR_OK) {
        fprintf(err, "sniroute selftest: '%s': %s\n", opt.target,
                sr_addr_error_str(sr_addr_parse(opt.target, strlen(opt.target), &addr)));
        return 2;
    }
    ne = sr_name_validate((const uint8_t *)opt.name, strlen(opt.name));
    if (ne != SR_NAME_OK) {
        fprintf(err, "sniroute selftest: NAME '%s': %s\n", opt.name, sr_name_error_str(ne));
        return 2;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = opt.is_quic ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    snprintf(port, sizeof(port), "%u", (unsigned)addr.port);
    rc = getaddrinfo(addr.host, port, &hints, &ai);
    if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY) {
        hints.ai_flags &= ~AI_ADDRCONFIG; /* a loopback literal on a host without routes */
        rc = getaddrinfo(addr.host, port, &hints, &ai);
    }
    if (rc != 0) {
        fprintf(err, "sniroute selftest: %s: %s\n", addr.host, gai_strerror(rc));
        return 2;
    }

    if (opt.alpn != NULL &&
        sr_hellogen_case_build(&sr_hellogen_cases[0], opt.name, strlen(opt.name), opt.alpn, &rnd,
                               hello, sizeof(hello), ends, 1, &i) == 0) {
        fprintf(err,
                "sniroute selftest: --alpn '%s': want names of 1 to 255 bytes, "
                "separated by commas\n",
                opt.alpn);
        freeaddrinfo(ai);
        return 2;
    }
    if (opt.is_quic) {
        rc = sr__selftest_quic(&opt, ai, out, err);
        freeaddrinfo(ai);
        return rc;
    }
    fprintf(out, "sniroute selftest %s %s%s%s, timeout %d ms\n\n", opt.target, opt.name,
            opt.alpn != NULL ? ", ALPN " : "", opt.alpn != NULL ? opt.alpn : "", opt.timeout_ms);
    fprintf(out, "%-13s %6s %6s  %-32s %6s\n", "case", "bytes", "writes", "result", "ms");
    for (i = 0; i < sr_hellogen_n_cases && i < sizeof(results) / sizeof(results[0]); i++) {
        const struct sr_hellogen_case *c = &sr_hellogen_cases[i];
        struct outcome *o = &results[i];
        size_t len, n_ends = 0;

        o->verdict = V_LOCAL_ERROR;
        names[i] = c->name;
        miss_hints[i] = NULL;
        if (!sr__selftest_selected(opt.only, c->name)) {
            continue;
        }
        n_run++;
        if (!sr__selftest_random(&rnd, sizeof(rnd))) {
            o->err = errno;
            len = 0;
        } else {
            len = sr_hellogen_case_build(c, opt.name, strlen(opt.name), opt.alpn, &rnd, hello,
                                         sizeof(hello), ends, sizeof(ends) / sizeof(ends[0]),
                                         &n_ends);
            if (len == 0) {
                o->err = EINVAL; /* cannot happen: NAME and --alpn were checked */
            } else {
                run_case(ai, hello, ends, n_ends, c, opt.timeout_ms, o);
            }
        }
        if (o->verdict == V_SERVER_HELLO || o->verdict == V_HRR) {
            n_reached++;
        }
        miss_hints[i] = verdict_hint(o);
        verdict_text(o, text, sizeof(text));
        fprintf(out, "%-13s %6zu %6zu  %-32s %6llu\n", c->name, len, n_ends, text,
                (unsigned long long)o->elapsed_ms);
        fflush(out);
    }
    freeaddrinfo(ai);

    fprintf(out, "\n%zu of %zu cases reached a TLS server\n", n_reached, n_run);
    sr__selftest_hints(out, names, miss_hints, i);
    return n_reached == n_run ? 0 : 1;
}
