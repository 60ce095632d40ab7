/* SPDX-License-Identifier: MIT */
/* The access log's output: the file it goes to (reference counted, so a reload can swap it
 * while workers still write to the old one) and each worker's batch of lines, written with
 * write(2) when it fills, after a short time, and whenever the worker is asked (reload,
 * drain, stop). No lock: every worker writes whole lines on its own, and the kernel keeps
 * two workers' writes apart (O_APPEND on a file, writes of at most PIPE_BUF bytes on a
 * pipe or socket). Formatting lines is log.h's business, not this one's. */
#ifndef SR_ACCESSLOG_H
#define SR_ACCESSLOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* A batch is written once it holds this much (a write of a regular file takes it whole). */
#define SR_ALOG_BATCH_MAX (64 * 1024)
/* ... or this long after its first line: what a crash may lose, at most. */
#define SR_ALOG_DELAY_MS 100
/* How long one write may wait for a pipe a reader does not empty (O_NONBLOCK set on it by
 * someone else) before the batch's rest is dropped and counted. */
#define SR_ALOG_STALL_MS 1000

/* Where the access log goes: a descriptor, and whether its writes must be cut into pieces
 * the kernel writes atomically (a pipe, a FIFO, a socket or a terminal: PIPE_BUF bytes) or
 * may be whole batches (a regular file opened O_APPEND). Shared by every worker. */
struct sr_alog_file {
    int fd;
    bool is_stream; /* not a regular file: writes of at most PIPE_BUF, cut at line ends */
    bool is_owned;  /* closed with the last reference (not stdout or stderr) */
    _Atomic size_t n_refs;
    _Atomic uint64_t n_dropped; /* lines a stalled pipe made us drop */
};

/* Open the access log <spec>: "off" gives NULL, "stdout" and "stderr" those descriptors,
 * anything else a file path opened O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC (mode 0666
 * less the umask). Returns 0 with <*out> set (one reference), or -1 after a notice. */
int
sr_alog_file_open(const char *spec, struct sr_alog_file **out);

/* Take one more reference to <f> (NULL is accepted and returned). */
struct sr_alog_file *
sr_alog_file_ref(struct sr_alog_file *f);

/* Drop a reference; the last closes the descriptor (if owned) and frees. NULL accepted. */
void
sr_alog_file_unref(struct sr_alog_file *f);

/* Write <len> bytes of whole lines (each ending in '\n') from <buf> to <f>, from any thread:
 * on a stream in pieces of at most PIPE_BUF bytes cut after a newline (sr_log_cut), on a
 * regular file at once. Retries EINTR and short writes; on EAGAIN waits for the descriptor
 * up to SR_ALOG_STALL_MS, then drops the rest and counts its lines in <f>->n_dropped.
 * Returns the bytes written. */
size_t
sr_alog_file_write(struct sr_alog_file *f, const char *buf, size_t len);

/* One worker's batch, touched only by that worker's thread. */
struct sr_alog_buf {
    char *buf; /* SR_ALOG_BATCH_MAX bytes, allocated at start */
    size_t len;
    struct sr_alog_file *file; /* a reference; NULL: the log is off */
    uv_timer_t timer;          /* armed while the batch is not empty */
    bool is_started;
    bool is_armed;
    uint64_t n_writes; /* batches written (test and bench figures) */
};

/* Start <b> (zeroed) on <loop>, writing to <file> (a reference is taken; NULL: off).
 * Returns 0 or UV_ENOMEM (then lines are written one by one, unbatched). */
int
sr_alog_buf_start(struct sr_alog_buf *b, uv_loop_t *loop, struct sr_alog_file *file);

/* Append one whole line <line> of <len> bytes (ending in '\n'). The batch is written first
 * if the line would not fit; a line is never split between batches. */
void
sr_alog_buf_add(struct sr_alog_buf *b, const char *line, size_t len);

/* Write the batch now (nothing if empty). */
void
sr_alog_buf_flush(struct sr_alog_buf *b);

/* Write the batch, then go on with <file> (reference taken; the old one dropped). For a
 * reload: lines formatted before it go where the log went before it. */
void
sr_alog_buf_switch(struct sr_alog_buf *b, struct sr_alog_file *file);

/* Write the batch and close the timer (<b>'s memory must stay valid until the loop has run
 * the close); a line added after is written at once, alone. Idempotent; safe on a never
 * started <b>. */
void
sr_alog_buf_stop(struct sr_alog_buf *b);

/* Drop the file and free the batch, once the loop has closed the timer. */
void
sr_alog_buf_fini(struct sr_alog_buf *b);

#endif
