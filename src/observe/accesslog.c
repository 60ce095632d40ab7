/* SPDX-License-Identifier: MIT */
/* The access log's file and each worker's batch of lines (accesslog.h). A batch is written
 * with write(2) from the worker's own thread: no lock, no stdio. What keeps lines whole is
 * the kernel: appends to a file opened O_APPEND land whole at the end whatever the other
 * writers do, and a write of at most PIPE_BUF bytes to a pipe is atomic (POSIX), so on a
 * pipe, FIFO or socket a batch goes out in pieces of at most PIPE_BUF cut after a newline. */
#include "sniroute/observe/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sniroute/observe/log.h"

int
sr_alog_file_open(const char *spec, struct sr_alog_file **out)
{
    struct sr_alog_file *f;
    struct stat st;
    int fd;

    *out = NULL;
    if (strcmp(spec, "off") == 0) {
        return 0;
    }
    if (strcmp(spec, "stdout") == 0) {
        fd = STDOUT_FILENO;
    } else if (strcmp(spec, "stderr") == 0) {
        fd = STDERR_FILENO;
    } else {
        /* O_APPEND: every write lands at the end, whole, whichever worker makes it, and a
         * file renamed away is not written to once it is reopened. Close-on-exec: a binary
         * upgrade opens its own. */
        fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            sr_log_notice("cannot open access_log %s: %s", spec, strerror(errno));
            return -1;
        }
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        if (fd > STDERR_FILENO) {
            close(fd);
        }
        sr_log_notice("cannot open access_log %s: out of memory", spec);
        return -1;
    }
    f->fd = fd;
    f->is_owned = fd > STDERR_FILENO;
    /* Anything but a regular file (a pipe under systemd or Kubernetes, a socket, a
     * terminal) gets writes the kernel does not interleave: PIPE_BUF at most. */
    f->is_stream = fstat(fd, &st) != 0 || !S_ISREG(st.st_mode);
    atomic_init(&f->n_refs, 1);
    atomic_init(&f->n_dropped, 0);
    *out = f;
    return 0;
}

struct sr_alog_file *
sr_alog_file_ref(struct sr_alog_file *f)
{
    if (f != NULL) {
        atomic_fetch_add_explicit(&f->n_refs, 1, memory_order_relaxed);
    }
    return f;
}

void
sr_alog_file_unref(struct sr_alog_file *f)
{
    /* acq_rel: every write made through a reference happens before the close. */
    if (f == NULL || atomic_fetch_sub_explicit(&f->n_refs, 1, memory_order_acq_rel) > 1) {
        return;
    }
    if (f->is_owned) {
        close(f->fd);
    }
    free(f);
}

/* Lines in <n> bytes at <buf>. */
static uint64_t
count_lines(const char *buf, size_t n)
{
    uint64_t lines = 0;
    const char *p = buf;
    const char *end = buf + n;

    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

size_t
sr_alog_file_write(struct sr_alog_file *f, const char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        size_t piece = f->is_stream ? sr_log_cut(buf + done, len - done, PIPE_BUF) : len - done;
        size_t off = 0;

        while (off < piece) {
            ssize_t n = write(f->fd, buf + done + off, piece - off);

            if (n > 0) {
                /* Short: a socket with little room, a full disk. The rest follows at once;
                 * only here could another worker's write come between (see README). */
                off += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* Someone set O_NONBLOCK on our stdout: wait for room, a while. */
                struct pollfd pfd = {.fd = f->fd, .events = POLLOUT};

                if (poll(&pfd, 1, SR_ALOG_STALL_MS) > 0) {
                    continue;
                }
            }
            /* An error, or a reader that does not read: drop what is left, and count it. */
            atomic_fetch_add_explicit(&f->n_dropped, count_lines(buf + done, len - done),
                                      memory_order_relaxed);
            return done;
        }
        done += piece;
    }
    return done;
}

/* --- One worker's batch ------------------------------------------------------------------ */

static void
on_alog_timer(uv_timer_t *timer)
{
    struct sr_alog_buf *b = timer->data;

    b->is_armed = false;
    sr_alog_buf_flush(b);
}

int
sr_alog_buf_start(struct sr_alog_buf *b, uv_loop_t *loop, struct sr_alog_file *file)
{
    b->file = sr_alog_file_ref(file);
    b->len = 0;
    b->is_armed = false;
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    /* The timer never keeps the loop alive: the server's stop writes what is left. */
    uv_unref((uv_handle_t *)&b->timer);
    b->is_started = true;
    b->buf = malloc(SR_ALOG_BATCH_MAX);
    return b->buf != NULL ? 0 : UV_ENOMEM;
}

void
sr_alog_buf_flush(struct sr_alog_buf *b)
{
    if (b->is_armed) {
        uv_timer_stop(&b->timer);
        b->is_armed = false;
    }
    if (b->len == 0) {
        return;
    }
    if (b->file != NULL) {
        (void)sr_alog_file_write(b->file, b->buf, b->len);
        b->n_writes++;
    }
    b->len = 0;
}

void
sr_alog_buf_add(struct sr_alog_buf *b, const char *line, size_t len)
{
    if (b->file == NULL || len == 0) {
        return;
    }
    if (!b->is_started || b->buf == NULL || len > SR_ALOG_BATCH_MAX) {
        /* Stopped, or no memory for a batch: the line alone, written now. */
        (void)sr_alog_file_write(b->file, line, len);
        return;
    }
    if (b->len + len > SR_ALOG_BATCH_MAX) {
        sr_alog_buf_flush(b);
    }
    memcpy(b->buf + b->len, line, len);
    b->len += len;
    if (!b->is_armed) {
        uv_timer_start(&b->timer, on_alog_timer, SR_ALOG_DELAY_MS, 0);
        b->is_armed = true;
    }
}

void
sr_alog_buf_switch(struct sr_alog_buf *b, struct sr_alog_file *file)
{
    struct sr_alog_file *old = b->file;

    sr_alog_buf_flush(b);
    b->file = sr_alog_file_ref(file);
    sr_alog_file_unref(old);
}

void
sr_alog_buf_stop(struct sr_alog_buf *b)
{
    if (!b->is_started) {
        return;
    }
    sr_alog_buf_flush(b);
    b->is_started = false;
    uv_close((uv_handle_t *)&b->timer, NULL);
    /* The file stays: a line after the stop (none is expected) is written alone. */
}

void
sr_alog_buf_fini(struct sr_alog_buf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
    sr_alog_file_unref(b->file);
    b->file = NULL;
}
