/* SPDX-License-Identifier: MIT */
/* The wire protocol between bench/loadgen.c and bench/backend.c, header-only so both
 * programs share it without a library. Not part of sniroute.
 *
 * A connection: the client sends a fixture ClientHello; the backend checks it byte for byte
 * and answers BP_REPLY_LEN bytes (BP_REPLY_OK, or BP_REPLY_BAD if the hello differed). A
 * client that only wanted that (rate, idle) then sends FIN. A streaming client instead sends
 * a 24-byte header (magic, connection id, bytes it wants sent down, the pace to send them
 * at) and then its upstream pattern; the backend verifies it and sends the downstream
 * pattern, and once the client's FIN has arrived and the downstream pattern is complete, a
 * BP_TRAILER_LEN trailer with what it received, then FIN.
 *
 * Patterns are 16-byte blocks, each self-describing: the tag (connection id, plus
 * BP_DIR_DOWN for backend-to-client), the block index, and a 64-bit hash of both. So a
 * block from another connection shows up as "mixed", one of ours at the wrong offset as
 * "reordered", any other wrong byte as "corrupt", and missing bytes as "lost". */
#ifndef BENCH_PATTERN_H
#define BENCH_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BP_REPLY_LEN   64
#define BP_REPLY_OK    "SRBENCH-OK"
#define BP_REPLY_BAD   "SRBENCH-BAD-HELLO"
#define BP_HDR_LEN     24
#define BP_HDR_MAGIC   0x32425253u /* "SRB2" little-endian */
#define BP_BLOCK       16
#define BP_DIR_DOWN    0x80000000u
#define BP_TRAILER_TAG 0x7fffffffu /* never a connection id: ids stay below it */
#define BP_TRAILER_LEN 64
#define BP_ID_MAX      0x7ffffffeu

struct bp_header {
    uint32_t conn_id;
    uint64_t down_bytes; /* 0: until the client's FIN; else a multiple of BP_BLOCK */
    uint64_t down_rate;  /* bytes per second the backend paces its stream to; 0: unpaced */
};

/* What the backend saw of one upstream stream, sent back in the trailer. */
struct bp_trailer {
    uint32_t conn_id;
    uint64_t down_sent;   /* pattern bytes the backend wrote before the trailer */
    uint64_t up_received; /* pattern bytes the backend received */
    uint64_t up_mixed;    /* blocks, see bp_check */
    uint64_t up_reordered;
    uint64_t up_corrupt;
};

static inline void
bp_put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void
bp_put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint32_t
bp_get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t
bp_get64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

static inline void
bp_header_encode(uint8_t out[BP_HDR_LEN], const struct bp_header *h)
{
    bp_put32(out, BP_HDR_MAGIC);
    bp_put32(out + 4, h->conn_id);
    bp_put64(out + 8, h->down_bytes);
    bp_put64(out + 16, h->down_rate);
}

static inline bool
bp_header_decode(const uint8_t in[BP_HDR_LEN], struct bp_header *h)
{
    h->conn_id = bp_get32(in + 4);
    h->down_bytes = bp_get64(in + 8);
    h->down_rate = bp_get64(in + 16);
    return bp_get32(in) == BP_HDR_MAGIC && h->conn_id <= BP_ID_MAX && h->down_bytes % BP_BLOCK == 0;
}

static inline void
bp_trailer_encode(uint8_t out[BP_TRAILER_LEN], const struct bp_trailer *t)
{
    memset(out, 0, BP_TRAILER_LEN);
    bp_put32(out, BP_TRAILER_TAG);
    bp_put32(out + 4, t->conn_id);
    bp_put64(out + 8, t->down_sent);
    bp_put64(out + 16, t->up_received);
    bp_put64(out + 24, t->up_mixed);
    bp_put64(out + 32, t->up_reordered);
    bp_put64(out + 40, t->up_corrupt);
}

static inline void
bp_trailer_decode(const uint8_t in[BP_TRAILER_LEN], struct bp_trailer *t)
{
    t->conn_id = bp_get32(in + 4);
    t->down_sent = bp_get64(in + 8);
    t->up_received = bp_get64(in + 16);
    t->up_mixed = bp_get64(in + 24);
    t->up_reordered = bp_get64(in + 32);
    t->up_corrupt = bp_get64(in + 40);
}

/* splitmix64's finalizer: cheap, and every input bit changes about half the output. */
static inline uint64_t
bp_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline void
bp_block(uint8_t out[BP_BLOCK], uint32_t tag, uint64_t index)
{
    bp_put32(out, tag);
    bp_put32(out + 4, (uint32_t)index);
    bp_put64(out + 8, bp_mix(((uint64_t)tag << 32) ^ index ^ 0x5352425eull));
}

/* Write the <len> pattern bytes of stream <tag> that start at stream offset <pos>. */
static inline void
bp_fill(uint8_t *out, uint32_t tag, uint64_t pos, size_t len)
{
    uint8_t blk[BP_BLOCK];

    while (len > 0) {
        uint64_t index = pos / BP_BLOCK;
        size_t off = (size_t)(pos % BP_BLOCK);
        size_t n = BP_BLOCK - off < len ? BP_BLOCK - off : len;

        if (n == BP_BLOCK) {
            bp_block(out, tag, index);
        } else {
            bp_block(blk, tag, index);
            memcpy(out, blk + off, n);
        }
        out += n;
        pos += n;
        len -= n;
    }
}

/* The receiving end of one pattern stream, fed in whatever pieces the socket returns. A
 * trailer (BP_TRAILER_TAG block at a block boundary) ends the pattern when <want_trailer>. */
struct bp_check {
    uint32_t tag;
    bool want_trailer;
    uint64_t n_blocks;    /* blocks seen (good or bad) */
    uint64_t n_good;      /* bytes in good blocks */
    uint64_t n_mixed;     /* blocks carrying another connection's tag */
    uint64_t n_reordered; /* our tag, wrong index */
    uint64_t n_corrupt;   /* anything else wrong, including bytes after a trailer */
    uint8_t part[BP_TRAILER_LEN];
    size_t part_len;
    bool in_trailer;
    bool has_trailer;
    struct bp_trailer trailer;
};

static inline void
bp_check_init(struct bp_check *c, uint32_t tag, bool want_trailer)
{
    memset(c, 0, sizeof(*c));
    c->tag = tag;
    c->want_trailer = want_trailer;
}

static inline void
bp_check_block(struct bp_check *c, const uint8_t *b)
{
    uint8_t want[BP_BLOCK];
    uint32_t tag = bp_get32(b);

    if (c->has_trailer) {
        c->n_corrupt++;
        return;
    }
    if (c->want_trailer && tag == BP_TRAILER_TAG) {
        c->in_trailer = true;
        return;
    }
    bp_block(want, c->tag, c->n_blocks);
    c->n_blocks++;
    if (memcmp(want, b, BP_BLOCK) == 0) {
        c->n_good += BP_BLOCK;
    } else if (tag != c->tag) {
        c->n_mixed++;
    } else if (bp_get32(b + 4) != (uint32_t)(c->n_blocks - 1)) {
        c->n_reordered++;
    } else {
        c->n_corrupt++;
    }
}

/* Pattern bytes received so far, whole blocks and the partial one. */
static inline uint64_t
bp_check_bytes(const struct bp_check *c)
{
    return c->n_blocks * BP_BLOCK + (c->in_trailer || c->has_trailer ? 0 : c->part_len);
}

static inline void
bp_check_feed(struct bp_check *c, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t unit = c->in_trailer ? BP_TRAILER_LEN : BP_BLOCK;
        size_t n;

        if (c->part_len == 0 && !c->in_trailer && len >= BP_BLOCK) {
            bp_check_block(c, data);
            if (c->in_trailer) {
                memcpy(c->part, data, BP_BLOCK);
                c->part_len = BP_BLOCK;
            }
            data += BP_BLOCK;
            len -= BP_BLOCK;
            continue;
        }
        n = unit - c->part_len < len ? unit - c->part_len : len;
        memcpy(c->part + c->part_len, data, n);
        c->part_len += n;
        data += n;
        len -= n;
        if (c->part_len < unit) {
            continue;
        }
        if (c->in_trailer) {
            bp_trailer_decode(c->part, &c->trailer);
            c->in_trailer = false;
            c->has_trailer = true;
            c->part_len = 0;
            continue;
        }
        c->part_len = 0;
        bp_check_block(c, c->part);
        if (c->in_trailer) {
            c->part_len = BP_BLOCK; /* the trailer's first block is already in part */
        }
    }
}

#endif
