/* SPDX-License-Identifier: MIT */
/* `sniroute selftest --quic`: for each case of sniroute/quicgen.h, a connected UDP socket
 * that sends the case's first flight (real QUIC Initials carrying a ClientHello for NAME) to
 * HOST:PORT and nowhere else, then reads what comes back with sniroute/quicanswer.h: the
 * server's Initial with a ServerHello means the hello reached a QUIC server whole; a Version
 * Negotiation packet means a QUIC server got the first datagram; a Retry is answered once,
 * as a client must, with the token, and the case goes on. Silence is a miss, and it is what
 * sniroute gives a name it does not route. It ends a reached case with a CONNECTION_CLOSE
 * of its own, so the server and the path forget the connection at once. Bounded: at most
 * three copies of a flight a third of --timeout apart, one Retry followed, one close sent. */
#include "sniroute/cmd/selftest.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sniroute/wire/quicanswer.h"
#include "sniroute/wire/quicgen.h"

#include "selftest_int.h"

/* Our DCID and SCID: 8 bytes, the least a first DCID may have (RFC 9000 7.2), as Chrome's. */
#define CID_LEN 8
/* Copies of a flight: the first and two resends, a third of --timeout apart. */
#define MAX_SENDS 3
/* The longest Retry token taken (real ones are under 200 bytes); a longer one is ignored. */
#define MAX_TOKEN 1024
/* Packet numbers go on after a Retry (RFC 9000 17.2.5.3) from RETRY_PN, above any a first
 * flight used; our CONNECTION_CLOSE has CLOSE_PN, above any a second flight used. */
#define RETRY_PN 256
#define CLOSE_PN 512

#define FLIGHT_MAX          (SR_QUICGEN_MAX_DATAGRAMS * 1500)
#define TLS_HS_SERVER_HELLO 2
#define QUIC_CRYPTO_ERROR   0x100 /* 0x0100 + a TLS alert (RFC 9001 4.8) */

/* RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello with this random. */
static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

enum verdict {
    Q_SERVER_HELLO,        /* reached */
    Q_HRR,                 /* reached: the server wants another key share */
    Q_INITIAL,             /* reached: the server's Initial, no ServerHello in it in time */
    Q_HANDSHAKE,           /* reached: the server's Handshake packets, its Initial lost */
    Q_VERSION_NEGOTIATION, /* reached: a QUIC server that does not speak the case's version */
    Q_CLOSE,               /* the server refused with CONNECTION_CLOSE */
    Q_NOT_SERVER_HELLO,    /* the server's Initial starts its CRYPTO stream with another message */
    Q_RETRY_TIMEOUT,       /* a Retry, then nothing for the flight with its token */
    Q_TIMEOUT,             /* nothing for us within --timeout */
    Q_REFUSED,             /* ICMP port unreachable */
    Q_LOCAL_ERROR,         /* our side failed (building the flight, a socket call) */
};

struct outcome {
    enum verdict verdict;
    bool is_after_retry;
    int err; /* Q_LOCAL_ERROR: errno */
    uint64_t close_error;
    uint8_t close_reason[SR_QUICANSWER_REASON_PHRASE];
    size_t close_reason_len;
    uint32_t versions[SR_QUICANSWER_MAX_VERSIONS]; /* Q_VERSION_NEGOTIATION */
    size_t n_versions;
    unsigned n_ignored;  /* datagrams that were not for us */
    const char *ignored; /* why the last one was not */
    size_t bytes;        /* the first flight's */
    size_t n_dgrams;
    uint64_t elapsed_ms;
};

/* One case's connection: what it sent and what it knows of the server. One lives for the
 * whole command (in static storage: 130 KB), cleared for each case. */
struct conn {
    struct sr_quic_ctx *ctx; /* libcrypto's contexts and scratch, the command's */
    int fd;
    const struct sr_quicgen_case *c;
    struct sr_quicgen_client cl;
    struct sr_hellogen_random rnd;
    uint8_t dcid[SR_QUIC_MAX_CID]; /* our Initials' DCID: ours, or a Retry's SCID */
    size_t dcid_len;
    uint8_t scid[CID_LEN];
    uint8_t token[MAX_TOKEN];
    size_t token_len;
    uint8_t server_cid[SR_QUIC_MAX_CID]; /* from the server's first Initial (RFC 9000 7.2) */
    size_t server_cid_len;
    bool has_server_cid;
    uint8_t flight[FLIGHT_MAX];
    size_t ends[SR_QUICGEN_MAX_DATAGRAMS];
    size_t n_dgrams;
    uint8_t rbuf[65536]; /* a datagram from the server: any UDP payload fits */
};

/* A non-blocking UDP socket connected to the first of <ai>'s addresses that takes it (one
 * of another family may have no route), or -1 with <*err> set. Connected: it sends to that
 * address only and the kernel drops datagrams from any other. */
static int
connect_any(const struct addrinfo *ai, int *err)
{
    *err = EADDRNOTAVAIL;
    for (; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            return fd;
        }
        *err = errno;
        if (fd >= 0) {
            close(fd);
        }
    }
    return -1;
}

/* Build the flight for the connection's current DCID and token into conn->flight. */
static size_t
build_flight(struct conn *cn, uint64_t first_pn)
{
    cn->cl.dcid = cn->dcid;
    cn->cl.dcid_len = cn->dcid_len;
    cn->cl.token = cn->token_len > 0 ? cn->token : NULL;
    cn->cl.token_len = cn->token_len;
    cn->cl.first_pn = first_pn;
    return sr_quicgen_case_build(cn->ctx, cn->c, &cn->cl, cn->flight, sizeof(cn->flight), cn->ends,
                                 SR_QUICGEN_MAX_DATAGRAMS, &cn->n_dgrams, NULL);
}

/* Send one datagram. Returns 0 or an errno (ECONNREFUSED: an ICMP error came back). */
static int
send_dgram(int fd, const uint8_t *p, size_t n)
{
    int tries;

    for (tries = 0; tries < 100; tries++) { /* EAGAIN on a UDP socket: its buffer is full */
        struct pollfd pfd = {fd, POLLOUT, 0};

        if (send(fd, p, n, 0) == (ssize_t)n) {
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return errno;
        }
        (void)poll(&pfd, 1, 10);
    }
    return EAGAIN;
}

static int
send_flight(struct conn *cn)
{
    size_t i, from = 0;
    int rc;

    for (i = 0; i < cn->n_dgrams; i++) {
        rc = send_dgram(cn->fd, cn->flight + from, cn->ends[i] - from);
        if (rc != 0) {
            return rc;
        }
        from = cn->ends[i];
    }
    return 0;
}

/* A CONNECTION_CLOSE (NO_ERROR) in an Initial to the server's connection ID, under the
 * Initial keys we used (RFC 9000 10.2.3 allows it in an Initial before the handshake is
 * done), padded to 1200 bytes as every client Initial (14.1). Best effort: sent once. */
static void
send_close(struct conn *cn)
{
    static const uint8_t frame[] = {0x1c, 0x00, 0x00, 0x00}; /* error, frame type, no reason */
    struct sr_quicgen_packet pk;
    uint8_t d[SR_QUIC_MIN_INITIAL_DATAGRAM + 64];
    size_t len;

    memset(&pk, 0, sizeof(pk));
    pk.version = cn->c->version;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = cn->server_cid;
    pk.dcid_len = cn->server_cid_len;
    pk.scid = cn->scid;
    pk.scid_len = sizeof(cn->scid);
    pk.token = cn->token_len > 0 ? cn->token : NULL;
    pk.token_len = cn->token_len;
    pk.pn = CLOSE_PN;
    pk.pn_len = 2;
    pk.keys_dcid = cn->dcid;
    pk.keys_dcid_len = cn->dcid_len;
    len = sr_quicgen_packet(cn->ctx, &pk, frame, sizeof(frame), SR_QUIC_MIN_INITIAL_DATAGRAM, d,
                            sizeof(d));
    if (len > 0) {
        (void)send_dgram(cn->fd, d, len);
    }
}

/* What the server's Initial says: done (a verdict in <*o>) or go on waiting. */
static bool
judge_initial(struct conn *cn, const struct sr_quicanswer *ans, struct outcome *o)
{
    if (!cn->has_server_cid) {
        memcpy(cn->server_cid, ans->scid, ans->scid_len);
        cn->server_cid_len = ans->scid_len;
        cn->has_server_cid = true;
    }
    if (ans->has_close) {
        o->verdict = Q_CLOSE;
        o->close_error = ans->close_error;
        memcpy(o->close_reason, ans->close_reason, ans->close_reason_len);
        o->close_reason_len = ans->close_reason_len;
        return true;
    }
    if (ans->hello_head_len == 0) {
        /* An ACK alone, or only Handshake packets so far: the ServerHello may follow. */
        if (ans->n_initial > 0) {
            o->verdict = Q_INITIAL;
        } else if (o->verdict != Q_INITIAL) {
            o->verdict = Q_HANDSHAKE;
        }
        return false;
    }
    if (ans->hello_head[0] != TLS_HS_SERVER_HELLO) {
        o->verdict = Q_NOT_SERVER_HELLO;
    } else if (ans->hello_head_len == SR_QUICANSWER_HELLO_HEAD &&
               memcmp(ans->hello_head + 6, hrr_random, sizeof(hrr_random)) == 0) {
        o->verdict = Q_HRR;
    } else {
        o->verdict = Q_SERVER_HELLO;
    }
    return true;
}

/* Take a Retry: its SCID becomes our DCID, its token goes in every Initial from now on,
 * and the flight goes again (RFC 9000 17.2.5.2). False if the flight cannot be rebuilt. */
static bool
follow_retry(struct conn *cn, const struct sr_quicanswer *ans)
{
    memcpy(cn->dcid, ans->scid, ans->scid_len);
    cn->dcid_len = ans->scid_len;
    memcpy(cn->token, ans->token, ans->token_len);
    cn->token_len = ans->token_len;
    return build_flight(cn, RETRY_PN) > 0;
}

/* One case, one UDP socket connected to <ai>. */
static void
run_case(struct sr_quic_ctx *ctx, struct conn *cn, const struct sr__selftest_opts *opt,
         const struct addrinfo *ai, const struct sr_quicgen_case *c, struct outcome *o)
{
    uint64_t start = sr__selftest_now_ms();
    uint64_t step = (uint64_t)opt->timeout_ms / MAX_SENDS;
    uint64_t deadline = start + (uint64_t)opt->timeout_ms;
    uint64_t resend_at = start + step;
    unsigned n_sends = 1;
    bool is_done = false;
    uint8_t cids[2 * CID_LEN];
    int rc;

    memset(o, 0, sizeof(*o));
    o->verdict = Q_TIMEOUT;
    memset(cn, 0, sizeof(*cn));
    cn->ctx = ctx;
    cn->c = c;
    cn->fd = -1;
    if (!sr__selftest_random(&cn->rnd, sizeof(cn->rnd)) ||
        !sr__selftest_random(cids, sizeof(cids))) {
        o->verdict = Q_LOCAL_ERROR;
        o->err = errno;
        return;
    }
    memcpy(cn->dcid, cids, CID_LEN);
    cn->dcid_len = CID_LEN;
    memcpy(cn->scid, cids + CID_LEN, CID_LEN);
    cn->cl.name = opt->name;
    cn->cl.name_len = strlen(opt->name);
    cn->cl.alpn = opt->alpn;
    cn->cl.rnd = &cn->rnd;
    cn->cl.scid = cn->scid;
    cn->cl.scid_len = sizeof(cn->scid);
    o->bytes = build_flight(cn, 0);
    o->n_dgrams = cn->n_dgrams;
    if (o->bytes == 0) {
        o->verdict = Q_LOCAL_ERROR;
        o->err = EINVAL; /* cannot happen: NAME and --alpn were checked */
        return;
    }

    cn->fd = connect_any(ai, &o->err);
    if (cn->fd < 0) {
        o->verdict = Q_LOCAL_ERROR;
        goto out;
    }
    rc = send_flight(cn);
    while (!is_done && rc == 0) {
        struct sr_quicanswer_client acl = {c->version, cn->dcid, cn->dcid_len, cn->scid,
                                           sizeof(cn->scid)};
        struct sr_quicanswer ans;
        uint64_t now = sr__selftest_now_ms();
        uint64_t wake = n_sends < MAX_SENDS && resend_at < deadline ? resend_at : deadline;
        struct pollfd pfd = {cn->fd, POLLIN, 0};
        ssize_t r;

        if (now >= deadline) {
            break;
        }
        if (now >= wake) { /* nothing yet: the flight may have been lost, send it again */
            rc = send_flight(cn);
            n_sends++;
            resend_at += step;
            continue;
        }
        if (poll(&pfd, 1, (int)(wake - now)) != 1) {
            continue;
        }
        r = recv(cn->fd, cn->rbuf, sizeof(cn->rbuf), 0);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                rc = errno;
            }
            continue;
        }
        sr_quicanswer_read(cn->ctx, &acl, cn->rbuf, (size_t)r, &ans);
        switch (ans.kind) {
        case SR_QUICANSWER_NONE:
            o->n_ignored++;
            o->ignored = sr_quicanswer_reason_str(ans.reason);
            break;
        case SR_QUICANSWER_VERSION_NEGOTIATION:
            if (o->is_after_retry || cn->has_server_cid) {
                o->n_ignored++; /* too late: the server spoke our version (RFC 9000 6.2) */
                o->ignored = "Version Negotiation after the server spoke";
                break;
            }
            o->verdict = Q_VERSION_NEGOTIATION;
            memcpy(o->versions, ans.versions, ans.n_versions * sizeof(ans.versions[0]));
            o->n_versions = ans.n_versions;
            is_done = true;
            break;
        case SR_QUICANSWER_RETRY:
            if (o->is_after_retry || cn->has_server_cid || ans.token_len > sizeof(cn->token)) {
                o->n_ignored++; /* at most one Retry, and none after an Initial (17.2.5.2) */
                o->ignored =
                    ans.token_len > sizeof(cn->token) ? "Retry token too long" : "a Retry too many";
                break;
            }
            o->is_after_retry = true;
            o->verdict = Q_RETRY_TIMEOUT;
            if (!follow_retry(cn, &ans)) {
                o->verdict = Q_LOCAL_ERROR;
                o->err = EINVAL;
                is_done = true;
                break;
            }
            rc = send_flight(cn); /* a new flight, with its own time and resends */
            n_sends = 1;
            now = sr__selftest_now_ms();
            deadline = now + (uint64_t)opt->timeout_ms;
            resend_at = now + step;
            break;
        case SR_QUICANSWER_INITIAL:
            is_done = judge_initial(cn, &ans, o);
            break;
        }
    }
    if (rc == ECONNREFUSED) {
        o->verdict = Q_REFUSED;
    } else if (rc != 0) {
        o->verdict = Q_LOCAL_ERROR;
        o->err = rc;
    }
    o->elapsed_ms = sr__selftest_now_ms() - start; /* to the verdict, not to the close */
    if (cn->has_server_cid && o->verdict != Q_CLOSE && o->verdict != Q_REFUSED) {
        send_close(cn);
    }
out:
    if (cn->fd >= 0) {
        close(cn->fd);
    }
}

static bool
is_reached(const struct outcome *o)
{
    return o->verdict == Q_SERVER_HELLO || o->verdict == Q_HRR || o->verdict == Q_INITIAL ||
           o->verdict == Q_HANDSHAKE || o->verdict == Q_VERSION_NEGOTIATION;
}

/* RFC 9000 20.1 (and RFC 9368 for 0x11). */
static const char *
transport_error_name(uint64_t e)
{
    static const char *const names[] = {
        "NO_ERROR",
        "INTERNAL_ERROR",
        "CONNECTION_REFUSED",
        "FLOW_CONTROL_ERROR",
        "STREAM_LIMIT_ERROR",
        "STREAM_STATE_ERROR",
        "FINAL_SIZE_ERROR",
        "FRAME_ENCODING_ERROR",
        "TRANSPORT_PARAMETER_ERROR",
        "CONNECTION_ID_LIMIT_ERROR",
        "PROTOCOL_VIOLATION",
        "INVALID_TOKEN",
        "APPLICATION_ERROR",
        "CRYPTO_BUFFER_EXCEEDED",
        "KEY_UPDATE_ERROR",
        "AEAD_LIMIT_REACHED",
        "NO_VIABLE_PATH",
        "VERSION_NEGOTIATION_ERROR",
    };

    return e < sizeof(names) / sizeof(names[0]) ? names[e] : "unknown error";
}

static const char *
version_name(uint32_t v, char *buf, size_t cap)
{
    switch (v) {
    case SR_QUIC_V1:
        return "v1";
    case SR_QUIC_V2:
        return "v2";
    case 0x709a50c4:
        return "v2-draft";
    }
    snprintf(buf, cap, "0x%08x", (unsigned)v);
    return buf;
}

static void
verdict_text(const struct outcome *o, char *out, size_t cap)
{
    const char *retry = o->is_after_retry ? " after Retry" : "";
    size_t n, i;

    switch (o->verdict) {
    case Q_SERVER_HELLO:
        snprintf(out, cap, "reached (ServerHello%s)", retry);
        return;
    case Q_HRR:
        snprintf(out, cap, "reached (HelloRetryRequest%s)", retry);
        return;
    case Q_INITIAL:
        snprintf(out, cap, "reached (Initial%s)", retry);
        return;
    case Q_HANDSHAKE:
        snprintf(out, cap, "reached (Handshake%s)", retry);
        return;
    case Q_VERSION_NEGOTIATION:
        n = (size_t)snprintf(out, cap, "reached (Version Negotiation:");
        for (i = 0; i < o->n_versions && n + 12 < cap; i++) {
            char buf[16];

            if ((o->versions[i] & 0x0f0f0f0f) == 0x0a0a0a0a) {
                continue; /* reserved, to exercise negotiation (RFC 9000 15): noise here */
            }
            n += (size_t)snprintf(out + n, cap - n, " %s",
                                  version_name(o->versions[i], buf, sizeof(buf)));
        }
        snprintf(out + n, cap - n, ")");
        return;
    case Q_CLOSE:
        if (o->close_error >= QUIC_CRYPTO_ERROR && o->close_error < QUIC_CRYPTO_ERROR + 256) {
            uint8_t alert = (uint8_t)(o->close_error - QUIC_CRYPTO_ERROR);

            n = (size_t)snprintf(out, cap, "close: alert %u %s", (unsigned)alert,
                                 sr__selftest_alert_name(alert));
        } else {
            n = (size_t)snprintf(out, cap, "close: 0x%llx %s", (unsigned long long)o->close_error,
                                 transport_error_name(o->close_error));
        }
        if (o->close_reason_len > 0 && n + 4 < cap) {
            n += (size_t)snprintf(out + n, cap - n, " \"");
            for (i = 0; i < o->close_reason_len && n + 2 < cap; i++) {
                uint8_t ch = o->close_reason[i];

                out[n++] = ch >= 0x20 && ch < 0x7f && ch != '"' ? (char)ch : '.';
            }
            snprintf(out + n, cap - n, "\"");
        }
        return;
    case Q_NOT_SERVER_HELLO:
        snprintf(out, cap, "Initial without a ServerHello");
        return;
    case Q_RETRY_TIMEOUT:
        snprintf(out, cap, "Retry, then no answer");
        return;
    case Q_TIMEOUT:
        if (o->n_ignored > 0) {
            snprintf(out, cap, "no answer (%u ignored: %s)", o->n_ignored, o->ignored);
        } else {
            snprintf(out, cap, "no answer");
        }
        return;
    case Q_REFUSED:
        snprintf(out, cap, "refused (ICMP port unreachable)");
        return;
    case Q_LOCAL_ERROR:
        snprintf(out, cap, "local error: %s", strerror(o->err));
        return;
    }
}

/* What a miss most likely means, for the notes under the table. */
static const char *
verdict_hint(const struct outcome *o)
{
    switch (o->verdict) {
    case Q_TIMEOUT:
        if (o->n_ignored > 0) {
            return "datagrams came back, none for our connection: not a QUIC server there?";
        }
        return "no answer: what sniroute gives a name it does not route (it drops them "
               "silently), or no QUIC server listens there, or UDP is filtered";
    case Q_REFUSED:
        return "nothing listens on that UDP port";
    case Q_RETRY_TIMEOUT:
        return "the server asked for address validation (Retry), but the flight with its token "
               "and a new connection ID got no answer: the path lost the connection";
    case Q_CLOSE:
        if (o->close_error == QUIC_CRYPTO_ERROR + 120) {
            return "the server takes none of the --alpn protocols (the default is h3)";
        }
        if (o->close_error >= QUIC_CRYPTO_ERROR && o->close_error < QUIC_CRYPTO_ERROR + 256) {
            return "the server refused the hello with a TLS alert";
        }
        return "the server closed the connection (QUIC transport error)";
    case Q_NOT_SERVER_HELLO:
        return "the server's Initial starts with no ServerHello: not a QUIC server we know";
    default:
        return NULL;
    }
}

int
sr__selftest_quic(const struct sr__selftest_opts *opt, const struct addrinfo *ai, FILE *out,
                  FILE *err)
{
    static struct sr_quic_ctx ctx; /* 66 KB */
    static struct conn conn;
    struct sr__selftest_opts o = *opt;
    struct outcome res;
    const char *names[16], *hints[16];
    char text[128];
    size_t i, n_run = 0, n_reached = 0;

    if (o.alpn == NULL) {
        o.alpn = "h3"; /* QUIC needs ALPN (RFC 9001 8.1); HTTP/3 is what browsers offer */
    }
    if (!sr_quic_ctx_init(&ctx)) {
        fprintf(err, "sniroute selftest: libcrypto lacks AES-128-GCM, AES-128-ECB or HKDF\n");
        return 1;
    }
    fprintf(out, "sniroute selftest --quic %s %s, ALPN %s, timeout %d ms\n\n", o.target, o.name,
            o.alpn, o.timeout_ms);
    fprintf(out, "%-13s %6s %6s  %-36s %6s\n", "case", "bytes", "dgrams", "result", "ms");
    for (i = 0; i < sr_quicgen_n_cases && i < sizeof(names) / sizeof(names[0]); i++) {
        const struct sr_quicgen_case *c = &sr_quicgen_cases[i];

        names[i] = c->name;
        hints[i] = NULL;
        if (!sr__selftest_selected(o.only, c->name)) {
            continue;
        }
        n_run++;
        run_case(&ctx, &conn, &o, ai, c, &res);
        if (is_reached(&res)) {
            n_reached++;
        }
        hints[i] = verdict_hint(&res);
        verdict_text(&res, text, sizeof(text));
        fprintf(out, "%-13s %6zu %6zu  %-36s %6llu\n", c->name, res.bytes, res.n_dgrams, text,
                (unsigned long long)res.elapsed_ms);
        fflush(out);
    }
    sr_quic_ctx_fini(&ctx);

    fprintf(out, "\n%zu of %zu cases reached a QUIC server\n", n_reached, n_run);
    sr__selftest_hints(out, names, hints, i);
    return n_reached == n_run ? 0 : 1;
}
