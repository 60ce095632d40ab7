/* SPDX-License-Identifier: MIT */
/* The binary upgrade's messages (upgrade_msg.h): framing, descriptors over SCM_RIGHTS,
 * and the record of a handed-over connection with its checks. */
#include "sniroute/core/upgrade_msg.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/config/route.h"
#include "sniroute/wire/name.h"

/* Room for one message's descriptors, aligned for struct cmsghdr. */
union sr_upgrade_ctl {
    char buf[CMSG_SPACE(sizeof(int) * SR_UPGRADE_FDS_PER_MSG)];
    struct cmsghdr align;
};

int
sr_upgrade_msg_send(int sock, uint16_t version, uint16_t type, uint32_t n, const int *fds,
                    size_t n_fds, const void *body, size_t body_len, int flags)
{
    struct sr_upgrade_msg msg;
    union sr_upgrade_ctl ctl;
    struct iovec iov[2];
    struct msghdr mh;
    struct cmsghdr *c;
    ssize_t r;

    memset(&msg, 0, sizeof(msg));
    msg.magic = SR_UPGRADE_MAGIC;
    msg.version = version;
    msg.type = type;
    msg.pid = (uint32_t)getpid();
    msg.n = n;
    iov[0].iov_base = &msg;
    iov[0].iov_len = sizeof(msg);
    iov[1].iov_base = (void *)body;
    iov[1].iov_len = body_len;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = body_len > 0 ? 2 : 1;
    if (n_fds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
    }
    do {
        r = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    }
    return r == (ssize_t)(sizeof(msg) + body_len) ? 0 : UV_EIO;
}

int
sr_upgrade_msg_send_base(int sock, uint16_t type, uint32_t n, const int *fds, size_t n_fds)
{
    return sr_upgrade_msg_send(sock, SR_UPGRADE_VERSION_BASE, type, n, fds, n_fds, NULL, 0, 0);
}

static bool
is_known_version(uint16_t version)
{
    return version >= SR_UPGRADE_VERSION_BASE && version <= SR_UPGRADE_VERSION;
}

void
sr_upgrade_msg_close_fds(const int *fds, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/* recvmsg into <iov> (<n_iov> parts) with the descriptors that come along (close-on-exec)
 * into <fds>, at most SR_UPGRADE_FDS_PER_MSG (more are closed). Returns the bytes received
 * and sets <*msg_flags>, or UV_EOF, UV_EAGAIN (with MSG_DONTWAIT) or another negated
 * errno. */
static ssize_t
recv_with_fds(int sock, struct iovec *iov, size_t n_iov, int flags, int *fds, size_t *n_fds,
              int *msg_flags)
{
    union sr_upgrade_ctl ctl;
    struct msghdr mh;
    struct cmsghdr *c;
    ssize_t r;

    *n_fds = 0;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = n_iov;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    do {
        r = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    }
    if (r == 0) {
        return UV_EOF;
    }
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        size_t k;
        size_t i;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0)) {
            continue;
        }
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < k; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*n_fds < SR_UPGRADE_FDS_PER_MSG) {
                fds[(*n_fds)++] = fd;
            } else {
                close(fd);
            }
        }
    }
    *msg_flags = mh.msg_flags;
    return r;
}

int
sr_upgrade_msg_recv(int sock, struct sr_upgrade_msg *msg, int *fds, size_t *n_fds, int flags)
{
    struct iovec iov;
    int msg_flags = 0;
    ssize_t r;

    iov.iov_base = msg;
    iov.iov_len = sizeof(*msg);
    r = recv_with_fds(sock, &iov, 1, flags, fds, n_fds, &msg_flags);
    if (r < 0) {
        return (int)r;
    }
    /* MSG_CTRUNC: the kernel dropped descriptors that did not fit; the count would lie. */
    if (r != (ssize_t)sizeof(*msg) || (msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
        msg->magic != SR_UPGRADE_MAGIC || !is_known_version(msg->version)) {
        sr_upgrade_msg_close_fds(fds, *n_fds);
        *n_fds = 0;
        return UV_EPROTO;
    }
    return 0;
}

/* ---- Established connections (version 2) -------------------------------------------- */

/* <text> is NUL-terminated within <cap> bytes and every byte before the NUL is printable
 * ASCII other than a space, '"', '\\' and '=': safe in a text or JSON log line, which is
 * where these end up. */
static bool
is_log_text(const char *text, size_t cap)
{
    const char *end = memchr(text, '\0', cap);
    const char *p;

    if (end == NULL) {
        return false;
    }
    for (p = text; p < end; p++) {
        if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\' || *p == '=') {
            return false;
        }
    }
    return true;
}

/* <fd> is a TCP socket, IPv4 or IPv6, that is not listening. Its peer may have closed or
 * reset it meanwhile: the relay meets that like any reset. */
static bool
is_stream_tcp(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(int);
    int type = 0;
    int proto = 0;
    int accepting = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
        return false;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0 || proto != IPPROTO_TCP) {
        return false;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || accepting != 0) {
        return false;
    }
    len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
           (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

const char *
sr_upgrade_msg_check_conn(const struct sr_upgrade_conn *rec, int client_fd, int backend_fd)
{
    size_t sni_len;

    if (!is_log_text(rec->listener, sizeof(rec->listener)) || rec->listener[0] == '\0') {
        return "bad listener name";
    }
    if (!is_log_text(rec->sni, sizeof(rec->sni))) {
        return "bad server name";
    }
    sni_len = strlen(rec->sni);
    if (sni_len > SR_NAME_MAX ||
        (sni_len > 0 && sr_name_validate((const uint8_t *)rec->sni, sni_len) != SR_NAME_OK)) {
        return "bad server name";
    }
    if (!is_log_text(rec->upstream, sizeof(rec->upstream)) ||
        !is_log_text(rec->label, sizeof(rec->label)) ||
        !is_log_text(rec->alpn_route, sizeof(rec->alpn_route))) {
        return "bad upstream or ALPN text";
    }
    if (rec->route > SR_ROUTE_DEFAULT || (rec->flags & ~SR_UPGRADE_CONN_FLAGS) != 0) {
        return "bad route or flags";
    }
    if (rec->client.ss_family != AF_UNSPEC && rec->client.ss_family != AF_INET &&
        rec->client.ss_family != AF_INET6) {
        return "bad client address";
    }
    if ((client_fd >= 0 || backend_fd >= 0) &&
        (!is_stream_tcp(client_fd) || !is_stream_tcp(backend_fd))) {
        return "a descriptor is not a connected TCP socket";
    }
    return NULL;
}

int
sr_upgrade_msg_send_conn(int sock, const struct sr_upgrade_conn *rec, int client_fd, int backend_fd)
{
    int fds[2] = {client_fd, backend_fd};
    int rc = sr_upgrade_msg_send(sock, SR_UPGRADE_VERSION, SR_UPGRADE_CONN, 2, fds, 2, rec,
                                 sizeof(*rec), MSG_DONTWAIT);

    /* ETOOMANYREFS: our user has too many descriptors in flight (RLIMIT_NOFILE's worth);
     * the new process is reading them: later. ENOBUFS: out of socket memory for now. */
    return rc == -ETOOMANYREFS || rc == UV_ENOBUFS ? UV_EAGAIN : rc;
}

int
sr_upgrade_msg_recv_conn(int sock, struct sr_upgrade_conn *rec, int fds[2], uint32_t *pid,
                         const char **why)
{
    struct sr_upgrade_msg msg;
    int got[SR_UPGRADE_FDS_PER_MSG];
    size_t n_got = 0;
    struct iovec iov[2];
    int msg_flags = 0;
    ssize_t r;

    *why = NULL;
    iov[0].iov_base = &msg;
    iov[0].iov_len = sizeof(msg);
    iov[1].iov_base = rec;
    iov[1].iov_len = sizeof(*rec);
    r = recv_with_fds(sock, iov, 2, MSG_DONTWAIT, got, &n_got, &msg_flags);
    if (r < 0) {
        return (int)r;
    }
    if (r != (ssize_t)(sizeof(msg) + sizeof(*rec)) || (msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        *why = "a short or truncated message";
    } else if (msg.magic != SR_UPGRADE_MAGIC || msg.version < SR_UPGRADE_VERSION ||
               !is_known_version(msg.version) || msg.type != SR_UPGRADE_CONN) {
        *why = "not a connection message";
    } else if (msg.n != 2 || n_got != 2) {
        *why = "not two descriptors";
    } else {
        *pid = msg.pid;
        *why = sr_upgrade_msg_check_conn(rec, got[0], got[1]);
    }
    if (*why != NULL) {
        sr_upgrade_msg_close_fds(got, n_got);
        return UV_EPROTO;
    }
    fds[0] = got[0];
    fds[1] = got[1];
    return 0;
}
