/* SPDX-License-Identifier: MIT */
/* Binary upgrade: the handoff of listening sockets from a running process to the binary
 * that replaces it, over a private socketpair (see upgrade_msg.h for the protocol). Both
 * sides live here; main decides when to upgrade and what to do with the outcome, and
 * server.c asks for an inherited socket before binding one. No routing, no relaying. */
#include "sniroute/core/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "sniroute/observe/log.h"
#include "sniroute/core/reactor.h"

extern char **environ;

static void
set_timeout(int sock, int which, unsigned ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    setsockopt(sock, SOL_SOCKET, which, &tv, sizeof(tv));
}

static void
format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        uv_ip6_name(sin6, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        uv_ip4_name(sin, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(sin->sin_port));
    }
}

static bool
is_same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family) {
        return false;
    }
    if (b->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;

        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* <fd> is a listening TCP socket, or a bound, unconnected UDP socket (a protocol = quic
 * listener's), on IPv4 or IPv6: its bound address goes to <ss>, SOCK_STREAM or SOCK_DGRAM
 * to <*type>. The kernel says which a socket is: the message needs no field for it. */
static bool
is_inheritable(int fd, struct sockaddr_storage *ss, int *type)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(int);
    int proto = 0;
    int accepting = 0;

    *type = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &len) != 0 ||
        (*type != SOCK_STREAM && *type != SOCK_DGRAM)) {
        return false;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0 ||
        proto != (*type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP)) {
        return false;
    }
    len = sizeof(int);
    if (*type == SOCK_STREAM &&
        (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || accepting != 1)) {
        return false;
    }
    len = sizeof(peer);
    if (*type == SOCK_DGRAM && getpeername(fd, (struct sockaddr *)&peer, &len) == 0) {
        return false; /* a connected UDP socket is a flow's, never a listener */
    }
    len = sizeof(*ss);
    memset(ss, 0, sizeof(*ss));
    return getsockname(fd, (struct sockaddr *)ss, &len) == 0 &&
           (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) &&
           ((const struct sockaddr_in *)ss)->sin_port != 0;
}

/* ---- The new process ---------------------------------------------------------------- */

int
sr_upgrade_env_fd(void)
{
    const char *s = getenv(SR_UPGRADE_ENV);
    char *end = NULL;
    long v;

    if (s == NULL) {
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX ||
        fcntl((int)v, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "sniroute: %s=%s is not an open descriptor; starting normally\n",
                SR_UPGRADE_ENV, s);
        unsetenv(SR_UPGRADE_ENV);
        return -1;
    }
    unsetenv(SR_UPGRADE_ENV);
    return (int)v;
}

static int
inherited_init(struct sr_inherited *set)
{
    memset(set, 0, sizeof(*set));
    if (uv_mutex_init(&set->lock) != 0) {
        return UV_ENOMEM;
    }
    set->sockets = calloc(SR_UPGRADE_FDS_MAX, sizeof(*set->sockets));
    return set->sockets == NULL ? UV_ENOMEM : 0;
}

int
sr_upgrade_receive(int fd, struct sr_inherited *set)
{
    struct sr_upgrade_msg msg;
    int fds[SR_UPGRADE_FDS_PER_MSG];
    size_t n_fds = 0;
    size_t n_sent = 0;
    size_t n_refused = 0;
    size_t i;
    int rc;

    rc = inherited_init(set);
    if (rc != 0) {
        sr_log_notice("upgrade: out of memory");
        return rc;
    }
    set_timeout(fd, SO_RCVTIMEO, SR_UPGRADE_TIMEOUT_MS);
    set_timeout(fd, SO_SNDTIMEO, SR_UPGRADE_TIMEOUT_MS);
    rc = sr_upgrade_msg_send_base(fd, SR_UPGRADE_HELLO, SR_UPGRADE_VERSION, NULL, 0);
    while (rc == 0) {
        rc = sr_upgrade_msg_recv(fd, &msg, fds, &n_fds, 0);
        if (rc != 0) {
            break;
        }
        if (msg.type == SR_UPGRADE_END && n_fds == 0 && msg.n == n_sent) {
            set->from_pid = msg.pid;
            break;
        }
        if (msg.type != SR_UPGRADE_FDS || n_fds == 0 || msg.n != n_fds ||
            n_sent + n_fds > SR_UPGRADE_FDS_MAX) {
            sr_upgrade_msg_close_fds(fds, n_fds);
            rc = UV_EPROTO;
            break;
        }
        n_sent += n_fds;
        for (i = 0; i < n_fds; i++) {
            struct sr_inherited_socket *s = &set->sockets[set->n];

            if (is_inheritable(fds[i], &s->addr, &s->type)) {
                s->fd = fds[i];
                set->n++;
            } else {
                close(fds[i]);
                n_refused++;
            }
        }
    }
    if (rc != 0) {
        sr_log_notice("upgrade: receiving the listening sockets failed: %s%s", uv_strerror(rc),
                      rc == UV_EAGAIN ? " (timed out)" : "");
        sr_inherited_release(set);
        return rc;
    }
    if (n_refused > 0) {
        sr_log_notice("upgrade: %zu descriptor(s) received were neither listening TCP "
                      "sockets nor bound UDP ones; closed",
                      n_refused);
    }
    sr_log_notice("upgrade: received %zu listening socket(s) from pid %u", set->n,
                  (unsigned)set->from_pid);
    return 0;
}

size_t
sr_inherited_min_workers(const struct sr_inherited *set)
{
    size_t most = 0;
    size_t i;
    size_t j;

    for (i = 0; set != NULL && i < set->n; i++) {
        size_t n = 0;

        for (j = 0; j < set->n; j++) {
            n += set->sockets[j].type == set->sockets[i].type &&
                 is_same_sockaddr(&set->sockets[j].addr,
                                  (const struct sockaddr *)&set->sockets[i].addr);
        }
        most = n > most ? n : most;
    }
    return most;
}

int
sr_inherited_take(struct sr_inherited *set, const struct sockaddr *sa, size_t worker)
{
    return sr_inherited_take_type(set, sa, SOCK_STREAM, worker);
}

static void
inherited_lock(struct sr_inherited *set)
{
    if (set->n_locks != NULL) {
        atomic_fetch_add_explicit(set->n_locks, 1, memory_order_relaxed);
    }
    uv_mutex_lock(&set->lock);
}

int
sr_inherited_take_type(struct sr_inherited *set, const struct sockaddr *sa, int type, size_t worker)
{
    size_t n = 0;
    size_t k;
    size_t i;
    int fd = -1;

    if (set == NULL) {
        return -1;
    }
    inherited_lock(set);
    for (i = 0; i < set->n; i++) {
        n += set->sockets[i].type == type && is_same_sockaddr(&set->sockets[i].addr, sa);
    }
    k = n > 0 ? worker % n : 0;
    for (i = 0; n > 0 && i < set->n; i++) {
        if (set->sockets[i].type == type && is_same_sockaddr(&set->sockets[i].addr, sa) &&
            k-- == 0) {
            fd = fcntl(set->sockets[i].fd, F_DUPFD_CLOEXEC, 0);
            set->sockets[i].is_taken = fd >= 0;
            break;
        }
    }
    uv_mutex_unlock(&set->lock);
    return fd;
}

void
sr_inherited_release(struct sr_inherited *set)
{
    char text[INET6_ADDRSTRLEN + 16];
    size_t i;

    inherited_lock(set);
    for (i = 0; i < set->n; i++) {
        if (!set->sockets[i].is_taken) {
            /* Old still holds its copy until it drains: closing ours drops nothing now. */
            format_sockaddr(&set->sockets[i].addr, text, sizeof(text));
            sr_log_notice("upgrade: %s%s is not in the config; not taken over", text,
                          set->sockets[i].type == SOCK_DGRAM ? " (UDP)" : "");
        }
        close(set->sockets[i].fd);
    }
    set->n = 0;
    uv_mutex_unlock(&set->lock);
}

void
sr_inherited_fini(struct sr_inherited *set)
{
    if (set->sockets == NULL) {
        return; /* never initialized */
    }
    sr_inherited_release(set);
    free(set->sockets);
    set->sockets = NULL;
    uv_mutex_destroy(&set->lock);
}

int
sr_upgrade_ready(int fd)
{
    int rc = sr_upgrade_msg_send_base(fd, SR_UPGRADE_READY, 0, NULL, 0);

    if (rc != 0) {
        sr_log_notice("upgrade: cannot tell the old process we are ready: %s", uv_strerror(rc));
    }
    return rc;
}

/* Messages taken per wakeup: the loop serves its own connections in between. */
#define SR_ADOPT_BATCH 64

/* Take up to <max> messages. Returns 0 (more may come), UV_EAGAIN (none now), or what
 * ended the socket (UV_EOF: old has closed its end). */
static int
adopter_read(struct sr_adopter *a, int max)
{
    struct sr_upgrade_conn rec;
    const char *why;
    int fds[2] = {-1, -1};
    int rc = 0;
    int i;

    for (i = 0; rc == 0 && i < max; i++) {
        rc = sr_upgrade_msg_recv_conn(a->sock, &rec, fds, &a->from_pid, &why);
        if (rc == 0) {
            a->n_adopted++;
            a->on_conn(a, &rec, fds[0], fds[1]);
        } else if (rc == UV_EPROTO) {
            a->n_failed++;
            sr_log_notice("upgrade: a connection from pid %u not taken over: %s; closed",
                          (unsigned)a->from_pid, why);
            rc = 0;
        }
    }
    return rc;
}

static void
on_adopter_readable(uv_poll_t *handle, int status, int events)
{
    struct sr_adopter *a = handle->data;
    int rc = status != 0 ? status : adopter_read(a, SR_ADOPT_BATCH);

    (void)events;
    if (rc == 0 || rc == UV_EAGAIN) {
        return;
    }
    if (rc != UV_EOF) {
        sr_log_notice("upgrade: reading connections from pid %u: %s", (unsigned)a->from_pid,
                      uv_strerror(rc));
    }
    sr_adopter_stop(a); /* old has no connection left, or is gone */
}

int
sr_adopter_start(struct sr_adopter *a, uv_loop_t *loop, int sock, uint32_t from_pid,
                 sr_adopter_conn_fn on_conn, void *data)
{
    int rc;

    memset(a, 0, sizeof(*a));
    a->sock = sock;
    a->from_pid = from_pid;
    a->on_conn = on_conn;
    a->data = data;
    rc = uv_poll_init(loop, &a->poll, sock);
    if (rc != 0) {
        close(sock);
        a->sock = -1;
        return rc;
    }
    a->poll.data = a;
    a->is_open = true;
    uv_unref((uv_handle_t *)&a->poll);
    rc = uv_poll_start(&a->poll, UV_READABLE, on_adopter_readable);
    if (rc != 0) {
        sr_adopter_stop(a);
    }
    return rc;
}

void
sr_adopter_stop(struct sr_adopter *a)
{
    if (!a->is_open) {
        return;
    }
    a->is_open = false;
    /* What old has sent already is ours: closing the socket with it unread would close
     * those connections. Shut our side for reading first, so that old's sends fail from
     * now on (EPIPE) and it keeps the rest; then take what is queued. */
    (void)shutdown(a->sock, SHUT_RD);
    (void)adopter_read(a, SR_UPGRADE_FDS_MAX);
    uv_close((uv_handle_t *)&a->poll, NULL);
    close(a->sock);
    a->sock = -1;
    if (a->n_adopted > 0 || a->n_failed > 0) {
        sr_log_notice("upgrade: took over %llu open connection(s) from pid %u (%llu failed)",
                      (unsigned long long)a->n_adopted, (unsigned)a->from_pid,
                      (unsigned long long)a->n_failed);
    }
}

/* ---- The old process ---------------------------------------------------------------- */

static void
on_upgrade_close(uv_handle_t *handle)
{
    struct sr_upgrade *up = handle->data;

    up->n_open--;
}

/* Under a service manager that listens on NOTIFY_SOCKET (systemd with NotifyAccess=main or
 * Type=notify), say which process is the service now: systemd would otherwise take our
 * exit after the drain for the end of the service and stop the new process with it. */
static void
notify_main_pid(int pid)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    char text[32];
    size_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        (len = strlen(path)) >= sizeof(sun.sun_path)) {
        return;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0'; /* an abstract socket */
    }
    snprintf(text, sizeof(text), "MAINPID=%d", pid);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, text, strlen(text), MSG_NOSIGNAL, (const struct sockaddr *)&sun,
                         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
        sr_log_notice("upgrade: cannot tell the service manager (NOTIFY_SOCKET) about pid %d: %s",
                      pid, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* The end of an upgrade, once: close what is ours and report. On failure, a new process
 * that is still running is stopped, so it cannot go on serving beside us. */
static void
finish(struct sr_upgrade *up, int status, const char *why)
{
    if (!up->is_running) {
        return;
    }
    up->is_running = false;
    if (status != 0) {
        if (!up->has_exited) {
            uv_process_kill(&up->child, SIGTERM);
        }
        sr_log_notice("upgrade failed: %s; still serving as pid %d", why, (int)getpid());
    } else {
        notify_main_pid(up->pid);
    }
    uv_close((uv_handle_t *)&up->poll, on_upgrade_close);
    uv_close((uv_handle_t *)&up->timer, on_upgrade_close);
    /* Closing the handle does not touch the process; it only stops watching it. */
    uv_close((uv_handle_t *)&up->child, on_upgrade_close);
    if (status == 0 && up->peer_version >= SR_UPGRADE_VERSION) {
        up->handover_fd = up->sock; /* for the connections (sr_upgrade_msg_send_conn) */
    } else {
        close(up->sock);
    }
    up->sock = -1;
    up->on_done(up, status);
}

/* Each socket once, however many of our descriptors refer to it (a worker beyond the
 * number of sockets shares one; see sr_inherited_take). Returns how many are left. */
static size_t
unique_sockets(int *fds, size_t n)
{
    struct stat st[2];
    size_t kept = 0;
    size_t i;
    size_t j;

    for (i = 0; i < n; i++) {
        bool is_dup = false;

        if (fstat(fds[i], &st[0]) != 0) {
            close(fds[i]);
            continue;
        }
        for (j = 0; j < kept && !is_dup; j++) {
            is_dup = fstat(fds[j], &st[1]) == 0 && st[0].st_dev == st[1].st_dev &&
                     st[0].st_ino == st[1].st_ino;
        }
        if (is_dup) {
            close(fds[i]);
        } else {
            fds[kept++] = fds[i];
        }
    }
    return kept;
}

static int
send_sockets(struct sr_upgrade *up)
{
    int *fds = malloc(sizeof(int) * SR_UPGRADE_FDS_MAX);
    size_t n;
    size_t i;
    size_t k;
    int rc = 0;

    if (fds == NULL) {
        return UV_ENOMEM;
    }
    n = unique_sockets(fds, up->collect(up, fds, SR_UPGRADE_FDS_MAX));
    for (i = 0; i < n && rc == 0; i += k) {
        k = n - i < SR_UPGRADE_FDS_PER_MSG ? n - i : SR_UPGRADE_FDS_PER_MSG;
        rc = sr_upgrade_msg_send_base(up->sock, SR_UPGRADE_FDS, (uint32_t)k, fds + i, k);
    }
    if (rc == 0) {
        rc = sr_upgrade_msg_send_base(up->sock, SR_UPGRADE_END, (uint32_t)n, NULL, 0);
    }
    /* The kernel copied them into the message: ours can go. */
    sr_upgrade_msg_close_fds(fds, n);
    free(fds);
    if (rc == 0) {
        sr_log_notice("upgrade: handed %zu listening socket(s) to pid %d", n, up->pid);
    }
    return rc;
}

static void
on_handoff_readable(uv_poll_t *handle, int status, int events)
{
    struct sr_upgrade *up = handle->data;
    struct sr_upgrade_msg msg;
    int fds[SR_UPGRADE_FDS_PER_MSG];
    size_t n_fds;
    char why[128];
    int rc = status;

    (void)events;
    if (rc == 0) {
        rc = sr_upgrade_msg_recv(up->sock, &msg, fds, &n_fds, MSG_DONTWAIT);
    }
    if (rc == UV_EAGAIN) {
        return;
    }
    if (rc == 0 && n_fds > 0) {
        sr_upgrade_msg_close_fds(fds, n_fds);
        rc = UV_EPROTO;
    }
    if (rc == 0 && msg.type == SR_UPGRADE_HELLO && !up->has_sent) {
        up->has_sent = true;
        up->peer_version = msg.n; /* a version 1 process sends 0 here */
        rc = send_sockets(up);
        if (rc == 0) {
            return;
        }
    } else if (rc == 0 && msg.type == SR_UPGRADE_READY && up->has_sent) {
        finish(up, 0, NULL);
        return;
    } else if (rc == 0) {
        rc = UV_EPROTO;
    }
    if (rc == UV_EOF || rc == UV_ECONNRESET) {
        /* New gave up (a config with problems, say: it said why on stderr). Its exit
         * status is the better report; it follows at once. */
        up->has_eof = true;
        uv_poll_stop(&up->poll);
        if (!up->has_exited) {
            return;
        }
    }
    snprintf(why, sizeof(why), "handoff with pid %d: %s", up->pid, uv_strerror(rc));
    finish(up, rc, why);
}

static void
on_child_exit(uv_process_t *child, int64_t exit_status, int term_signal)
{
    struct sr_upgrade *up = child->data;
    char why[128];

    up->has_exited = true;
    if (term_signal != 0) {
        snprintf(why, sizeof(why), "new process %d was killed by signal %d before it was ready",
                 up->pid, term_signal);
    } else {
        snprintf(why, sizeof(why), "new process %d exited with status %lld before it was ready",
                 up->pid, (long long)exit_status);
    }
    finish(up, UV_ESRCH, why);
}

static void
on_timeout(uv_timer_t *timer)
{
    struct sr_upgrade *up = timer->data;

    finish(up, UV_ETIMEDOUT, "the new process was not ready in time");
}

/* Our environment with SR_UPGRADE_ENV=<fd> instead of any value it had: a new array of
 * pointers into environ plus <var> (the caller's), or NULL when out of memory. */
static char **
child_env(char *var)
{
    size_t n = 0;
    size_t k = 0;
    size_t len = strlen(SR_UPGRADE_ENV);
    char **env;

    while (environ[n] != NULL) {
        n++;
    }
    env = calloc(n + 2, sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    for (n = 0; environ[n] != NULL; n++) {
        if (strncmp(environ[n], SR_UPGRADE_ENV, len) != 0 || environ[n][len] != '=') {
            env[k++] = environ[n];
        }
    }
    env[k++] = var;
    env[k] = NULL;
    return env;
}

int
sr_upgrade_start(struct sr_upgrade *up, uv_loop_t *loop, const char *exe, char *const *argv)
{
    uv_process_options_t opt;
    uv_stdio_container_t stdio[4];
    char var[sizeof(SR_UPGRADE_ENV) + 16];
    char **env;
    int sv[2];
    int i;
    int rc;

    if (up->n_open > 0) {
        return UV_EBUSY;
    }
    up->loop = loop;
    up->sock = -1;
    up->is_running = false;
    up->has_sent = false;
    up->has_exited = false;
    up->has_eof = false;
    up->peer_version = 0;
    up->handover_fd = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = -errno;
        sr_log_notice("upgrade: socketpair: %s", uv_strerror(rc));
        return rc;
    }
    /* Our end blocks for sends (a few small messages) but is read without waiting. */
    set_timeout(sv[0], SO_SNDTIMEO, 5000);
    rc = uv_poll_init(loop, &up->poll, sv[0]);
    if (rc != 0) {
        close(sv[0]);
        close(sv[1]);
        sr_log_notice("upgrade: cannot watch the handoff socket: %s", uv_strerror(rc));
        return rc;
    }
    up->poll.data = up;
    up->child.data = up;
    up->timer.data = up;
    up->n_open = 2; /* poll and child: a failed uv_spawn still leaves a handle to close */
    /* The child's descriptor 3 is its end; libuv dup2()s it there without close-on-exec. */
    snprintf(var, sizeof(var), "%s=3", SR_UPGRADE_ENV);
    env = child_env(var);
    memset(&opt, 0, sizeof(opt));
    for (i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = sv[1];
    opt.exit_cb = on_child_exit;
    opt.file = exe;
    opt.args = (char **)argv;
    opt.env = env;
    opt.stdio_count = 4;
    opt.stdio = stdio;
    if (env == NULL) {
        rc = UV_ENOMEM;
    } else {
        /* The child holds a copy of every descriptor until it execs (uv_spawn returns
         * after that): no worker may close a watched socket without DEL meanwhile. */
        sr_reactor_fork_begin();
        rc = uv_spawn(loop, &up->child, &opt);
        sr_reactor_fork_end();
    }
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        uv_close((uv_handle_t *)&up->poll, on_upgrade_close);
        if (env != NULL) {
            uv_close((uv_handle_t *)&up->child, on_upgrade_close);
        } else {
            up->n_open--;
        }
        free(env);
        sr_log_notice("upgrade: cannot start %s: %s; still serving", exe, uv_strerror(rc));
        return rc;
    }
    free(env);
    up->pid = up->child.pid;
    up->sock = sv[0];
    up->n_open++;
    up->is_running = true;
    uv_timer_init(loop, &up->timer);
    uv_timer_start(&up->timer, on_timeout, SR_UPGRADE_TIMEOUT_MS, 0);
    sr_log_notice("upgrade: started %s as pid %d", exe, up->pid);
    rc = uv_poll_start(&up->poll, UV_READABLE, on_handoff_readable);
    if (rc != 0) {
        finish(up, rc, "cannot watch the handoff socket");
    }
    return 0;
}

void
sr_upgrade_abort(struct sr_upgrade *up)
{
    finish(up, UV_ECANCELED, "stopping");
}

void
sr_upgrade_exe_path(char *out, size_t cap, const char *argv0)
{
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);

    if (n > 0 && (size_t)n < cap - 1) {
        out[n] = '\0';
        return;
    }
    snprintf(out, cap, "%s", argv0);
}
