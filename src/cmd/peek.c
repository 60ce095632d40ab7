/* SPDX-License-Identifier: MIT */
/* The peek diagnostic: read a file of raw client bytes, run the ClientHello parser over it
 * once, and print what it found in a stable "key: value" form that scripts can grep. With
 * --quic the file holds datagrams, and the QUIC Initial reader reads them in turn. */
#include "sniroute/cmd/peek.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/hello.h"
#include "sniroute/wire/quic.h"

/* Far above any real hello (the parser refuses more than about 128 KiB of handshake) and
 * small enough to read into one buffer. */
#define PEEK_MAX (256 * 1024)

static const char *
version_name(uint16_t v)
{
    switch (v) {
    case 0x0300:
        return "SSL 3.0";
    case 0x0301:
        return "TLS 1.0";
    case 0x0302:
        return "TLS 1.1";
    case 0x0303:
        return "TLS 1.2";
    case 0x0304:
        return "TLS 1.3";
    }
    return "unknown";
}

static void
print_version(FILE *out, const char *key, uint16_t v)
{
    fprintf(out, "%s: %s (0x%04x)\n", key, version_name(v), (unsigned)v);
}

/* Wire bytes printed as text: printable ASCII as is, everything else as \xHH. */
static void
print_bytes(FILE *out, const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] >= 0x21 && p[i] <= 0x7e && p[i] != '\\') {
            fputc(p[i], out);
        } else {
            fprintf(out, "\\x%02x", (unsigned)p[i]);
        }
    }
}

/* "sni: NAME" (or "(none)") and "alpn: P1,P2" (or "(none)") lines of a hello. */
static void
print_name_alpn(FILE *out, const struct sr_hello_result *h, bool has_sni)
{
    struct sr_view cur = h->alpn;
    struct sr_view proto;
    const char *sep = "";

    fputs("sni: ", out);
    if (has_sni) {
        print_bytes(out, h->sni.ptr, h->sni.len);
    } else {
        fputs("(none)", out);
    }
    fputs("\nalpn: ", out);
    if (!h->has_alpn) {
        fputs("(none)", out);
    } else if (h->alpn_dropped) {
        fputs("(present, split across records and too long to show)", out);
    }
    while (sr_hello_alpn_next(&cur, &proto)) {
        fputs(sep, out);
        print_bytes(out, proto.ptr, proto.len);
        sep = ",";
    }
    fputc('\n', out);
}

static void
print_result(FILE *out, const struct sr_hello_result *res)
{
    fprintf(out, "status: %s\n", sr_hello_status_str(res->status));
    if (res->status == SR_HELLO_NEED_MORE) {
        fprintf(out, "need: %zu more bytes\n", res->need);
        return;
    }
    if (res->status != SR_HELLO_FOUND && res->status != SR_HELLO_NO_SNI) {
        fprintf(out, "reason: %s", sr_hello_reason_str(res->reason));
        if (res->reason == SR_HELLO_REASON_SNI_NAME) {
            fprintf(out, " (%s)", sr_name_error_str(res->name_error));
        }
        fputc('\n', out);
        return;
    }
    print_name_alpn(out, res, res->status == SR_HELLO_FOUND);
    print_version(out, "record_version", res->record_version);
    print_version(out, "legacy_version", res->legacy_version);
    print_version(out, "max_version", res->max_version);
    fprintf(out, "records: %u\n", res->n_records);
    fprintf(out, "hello_len: %zu\n", res->hello_len);
    fprintf(out, "ech: %s\n", res->has_ech ? "yes" : "no");
}

int
sr_peek_run(const char *path, FILE *out, FILE *err)
{
    static struct sr_hello_scratch scratch; /* big for a stack in a CLI; reentrancy not needed */
    struct sr_hello_result res;
    const char *name = (path == NULL || strcmp(path, "-") == 0) ? "(stdin)" : path;
    FILE *in = stdin;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = 2;

    if (path != NULL && strcmp(path, "-") != 0) {
        in = fopen(path, "rb");
        if (in == NULL) {
            fprintf(err, "sniroute peek: %s: %s\n", name, strerror(errno));
            return 2;
        }
    }
    /* One byte more than the limit tells "exactly at the limit" from "over it". */
    buf = malloc(PEEK_MAX + 1);
    if (buf == NULL) {
        fprintf(err, "sniroute peek: out of memory\n");
        goto done;
    }
    len = fread(buf, 1, PEEK_MAX + 1, in);
    if (ferror(in)) {
        fprintf(err, "sniroute peek: %s: read error\n", name);
        goto done;
    }
    if (len > PEEK_MAX) {
        fprintf(err, "sniroute peek: %s: more than %d bytes\n", name, PEEK_MAX);
        goto done;
    }
    sr_hello_parse(buf, len, &scratch, &res);
    fprintf(out, "input: %s, %zu bytes\n", name, len);
    print_result(out, &res);
    rc = (res.status == SR_HELLO_FOUND || res.status == SR_HELLO_NO_SNI) ? 0 : 1;
done:
    free(buf);
    if (in != stdin) {
        fclose(in);
    }
    return rc;
}

/* --- QUIC: a file of datagrams ------------------------------------------------------------ */

static void
print_hex(FILE *out, const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        fprintf(out, "%02x", (unsigned)p[i]);
    }
}

/* What a decided flow says: its ClientHello's fields and the Initial packets'. */
static void
print_quic_hello(FILE *out, const struct sr_quic_initial *st, const struct sr_quic_result *res)
{
    const struct sr_hello_result *h = &res->hello;

    print_name_alpn(out, h, res->status == SR_QUIC_FOUND);
    print_version(out, "legacy_version", h->legacy_version);
    print_version(out, "max_version", h->max_version);
    fprintf(out, "hello_len: %zu\n", st->hello_len);
    fprintf(out, "ech: %s\n", h->has_ech ? "yes" : "no");
}

int
sr_peek_quic_run(const char *path, FILE *out, FILE *err)
{
    /* Big for a stack in a CLI (the reader's scratch holds a whole datagram). */
    static struct sr_quic_ctx ctx;
    static struct sr_quic_initial st;
    const char *name = (path == NULL || strcmp(path, "-") == 0) ? "(stdin)" : path;
    struct sr_quic_result res;
    enum sr_quic_status last = SR_QUIC_NEED_MORE;
    FILE *in = stdin;
    uint8_t *buf = NULL;
    size_t len = 0;
    size_t off = 0;
    unsigned n = 0;
    int rc = 2;

    if (path != NULL && strcmp(path, "-") != 0) {
        in = fopen(path, "rb");
        if (in == NULL) {
            fprintf(err, "sniroute peek: %s: %s\n", name, strerror(errno));
            return 2;
        }
    }
    buf = malloc(PEEK_MAX + 1);
    if (buf == NULL || !sr_quic_ctx_init(&ctx)) {
        fprintf(err, "sniroute peek: out of memory (or libcrypto without AES-GCM and HKDF)\n");
        free(buf);
        if (in != stdin) {
            fclose(in);
        }
        return 2;
    }
    len = fread(buf, 1, PEEK_MAX + 1, in);
    if (ferror(in) || len > PEEK_MAX) {
        fprintf(err, "sniroute peek: %s: %s\n", name, ferror(in) ? "read error" : "over 256 KiB");
        goto done;
    }
    /* Each datagram: a 2-byte big-endian length, then its bytes (test/fixtures/quic). */
    for (off = 0; off < len; off += 2 + (size_t)(buf[off] << 8 | buf[off + 1])) {
        if (len - off < 2 || len - off - 2 < (size_t)(buf[off] << 8 | buf[off + 1])) {
            fprintf(err,
                    "sniroute peek: %s: datagram %u runs past the end (each is a 2-byte "
                    "big-endian length, then its bytes)\n",
                    name, n + 1);
            goto done;
        }
        n++;
    }
    sr_quic_initial_init(&st, 0);
    fprintf(out, "input: %s, %zu bytes, %u datagram(s)\n", name, len, n);
    n = 0;
    for (off = 0; off < len; off += 2 + (size_t)(buf[off] << 8 | buf[off + 1])) {
        size_t dlen = (size_t)(buf[off] << 8 | buf[off + 1]);

        n++;
        if (last == SR_QUIC_FOUND || last == SR_QUIC_NO_SNI) {
            fprintf(out, "datagram %u: %zu bytes, not read (decided)\n", n, dlen);
            continue;
        }
        sr_quic_feed(&ctx, &st, buf + off + 2, dlen, &res);
        fprintf(out, "datagram %u: %zu bytes, %s", n, dlen, sr_quic_status_str(res.status));
        if (res.reason != SR_QUIC_REASON_NONE) {
            fprintf(out, ": %s", sr_quic_reason_str(res.reason));
            if (res.reason == SR_QUIC_REASON_VERSION) {
                fprintf(out, " (version 0x%08x)", (unsigned)res.version);
            }
            if (res.reason == SR_QUIC_REASON_HELLO) {
                fprintf(out, " (%s)", sr_hello_reason_str(res.hello.reason));
            }
        }
        fprintf(out, " (Initial packets %u, skipped %u, CRYPTO frames %u, out of order %u)%s\n",
                res.n_initial, res.n_skipped, res.n_crypto_frames, res.n_crypto_out_of_order,
                res.status == SR_QUIC_NEED_MORE || res.status == SR_QUIC_FOUND ||
                        res.status == SR_QUIC_NO_SNI
                    ? ""
                    : "; dropped, as the daemon drops it");
        if (res.status == SR_QUIC_NEED_MORE || res.status == SR_QUIC_FOUND ||
            res.status == SR_QUIC_NO_SNI) {
            last = res.status;
        } else if (last == SR_QUIC_NEED_MORE && st.n_initial == 0) {
            last = res.status; /* nothing good yet: this is the story so far */
        }
    }
    fprintf(out, "status: %s\n", sr_quic_status_str(last));
    if (st.version != 0) {
        fprintf(out, "version: 0x%08x (%s)\ndcid: ", (unsigned)st.version,
                st.version == SR_QUIC_V1 ? "v1" : "v2");
        print_hex(out, st.dcid, st.dcid_len);
        fprintf(out,
                "\ninitial_packets: %u\ncrypto_frames: %u\ncrypto_out_of_order: %u\n"
                "crypto_bytes: %zu\n",
                st.n_initial, st.n_crypto_frames, st.n_crypto_out_of_order, st.contig);
    }
    if (last == SR_QUIC_FOUND || last == SR_QUIC_NO_SNI) {
        print_quic_hello(out, &st, &res);
        rc = 0;
    } else {
        rc = 1;
    }
done:
    sr_quic_ctx_fini(&ctx);
    free(buf);
    if (in != stdin) {
        fclose(in);
    }
    return rc;
}
