/* SPDX-License-Identifier: MIT */
/* The peek diagnostic: read a file of raw client bytes, run the ClientHello parser over it
 * once, and print what it found in a stable "key: value" form that scripts can grep. */
#include "sniroute/cmd/peek.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/hello.h"

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

static void
print_result(FILE *out, const struct sr_hello_result *res)
{
    struct sr_view cur;
    struct sr_view proto;
    const char *sep = "";

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
    fputs("sni: ", out);
    if (res->status == SR_HELLO_FOUND) {
        print_bytes(out, res->sni.ptr, res->sni.len);
    } else {
        fputs("(none)", out);
    }
    fputs("\nalpn: ", out);
    if (!res->has_alpn) {
        fputs("(none)", out);
    } else if (res->alpn_dropped) {
        fputs("(present, split across records and too long to show)", out);
    }
    cur = res->alpn;
    while (sr_hello_alpn_next(&cur, &proto)) {
        fputs(sep, out);
        print_bytes(out, proto.ptr, proto.len);
        sep = ",";
    }
    fputc('\n', out);
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
