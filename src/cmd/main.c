/* SPDX-License-Identifier: MIT */
/* The command line: run the router (-c), check a config (-t), or show what the parser finds
 * in raw ClientHello bytes (peek). The only place that decides the exit status; it owns the
 * loop, the config and the server, and tears all of them down before it returns. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/observe/admin.h"
#include "sniroute/config/config.h"
#include "sniroute/config/explain.h"
#include "sniroute/cmd/explaincmd.h"
#include "sniroute/config/lint.h"
#include "sniroute/observe/log.h"
#include "sniroute/cmd/peek.h"
#include "sniroute/proxy/server.h"
#include "sniroute/cmd/selftest.h"
#include "sniroute/core/reactor.h"
#include "sniroute/core/sockmap.h"
#include "sniroute/core/upgrade.h"
#include "sniroute/proxy/worker.h"

#define SR_DEFAULT_CONFIG "/etc/sniroute/sniroute.ini"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: sniroute [-c FILE]        run the router (default config: %s)\n"
            "       sniroute -t [--strict] [-c FILE]\n"
            "                                 check the config and exit: 0 if valid, 1 if not;\n"
            "                                 lint warnings too (--strict: they make it invalid)\n"
            "       sniroute explain [-c FILE] [--listener NAME] [--from ADDRESS] NAME "
            "[ALPN[,ALPN...]]\n"
            "                                 where NAME would be routed, and why: exit 0 if\n"
            "                                 routed, 1 if not, 2 on a usage or config error\n"
            "       sniroute peek [FILE]      show what a raw ClientHello (FILE or stdin) says\n"
            "       sniroute peek --quic [FILE]\n"
            "                                 the same for QUIC datagrams (each a 2-byte length\n"
            "                                 and its bytes): what the Initial reader finds\n"
            "       sniroute selftest [--timeout D] [--alpn P,..] [--only CASE,..] HOST:PORT NAME\n"
            "                                 send ClientHellos for NAME split the hard ways\n"
            "                                 and report which reach a TLS server\n"
            "       sniroute selftest --quic [...] HOST:PORT NAME\n"
            "                                 the same over UDP: QUIC Initials, to a QUIC server\n"
            "       sniroute -h | -V          help, version\n"
            "\n"
            "sniroute routes TLS connections by the server name in the ClientHello, without\n"
            "decrypting anything. SIGHUP reloads the config (an invalid one is logged and\n"
            "ignored). SIGTERM or SIGINT stop accepting and let open connections finish (up to\n"
            "drain_timeout); a second one closes them at once. SIGUSR2 upgrades the binary:\n"
            "the program at the path this one was started from takes over the listening\n"
            "sockets, then this one drains (if the new one fails, this one keeps serving).\n",
            SR_DEFAULT_CONFIG);
}

struct error_count {
    size_t n;
};

static void
on_config_error(void *ctx, const char *msg)
{
    struct error_count *count = ctx;

    count->n++;
    fprintf(stderr, "%s\n", msg);
}

/* The account named by user/group, looked up once at start (and by -t). */
struct account {
    bool is_set;
    uid_t uid;
    gid_t gid;
};

/* Look up user and group; every problem is printed as FILE:LINE. Returns how many. */
static size_t
account_lookup(const char *path, const struct sr_config *cfg, struct account *acc)
{
    const struct passwd *pw = NULL;
    const struct group *gr = NULL;
    size_t n_errors = 0;

    memset(acc, 0, sizeof(*acc));
    if (cfg->user == NULL && cfg->group == NULL) {
        return 0;
    }
    if (cfg->user != NULL) {
        pw = getpwnam(cfg->user);
        if (pw == NULL) {
            fprintf(stderr, "%s:%u: sniroute: user: no such user '%s'\n", path, cfg->user_line,
                    cfg->user);
            n_errors++;
        }
    }
    if (cfg->group != NULL) {
        gr = getgrnam(cfg->group);
        if (gr == NULL) {
            fprintf(stderr, "%s:%u: sniroute: group: no such group '%s'\n", path, cfg->group_line,
                    cfg->group);
            n_errors++;
        }
    }
    if (cfg->user == NULL && cfg->group != NULL) {
        fprintf(stderr, "%s:%u: sniroute: group: needs a user as well\n", path, cfg->group_line);
        n_errors++;
    }
    if (n_errors == 0) {
        acc->is_set = true;
        acc->uid = pw->pw_uid;
        acc->gid = gr != NULL ? gr->gr_gid : pw->pw_gid;
    }
    return n_errors;
}

/* After binding: give up root for good (supplementary groups, group, then user; setuid
 * last, since it takes the right to change the others). Returns 0, or -1 after logging. */
static int
drop_privileges(const struct sr_config *cfg, const struct account *acc)
{
    if (!acc->is_set) {
        return 0;
    }
    if (geteuid() != 0) {
        if (geteuid() == acc->uid && getegid() == acc->gid) {
            return 0; /* started as that account already, e.g. by systemd's User= */
        }
        sr_log_notice("user = %s: switching accounts needs root (or start as that user)",
                      cfg->user);
        return -1;
    }
    if (setgroups(1, &acc->gid) != 0 || setgid(acc->gid) != 0 || setuid(acc->uid) != 0) {
        sr_log_notice("cannot switch to user %s: %s", cfg->user, strerror(errno));
        return -1;
    }
    if (acc->uid != 0 && setuid(0) == 0) {
        sr_log_notice("still able to regain root after switching to %s; refusing to run",
                      cfg->user);
        return -1;
    }
    sr_log_notice("running as user %s (uid %u, gid %u)", cfg->user, (unsigned)acc->uid,
                  (unsigned)acc->gid);
    return 0;
}

/* Allocations from this size up get pages of their own, returned to the kernel when freed.
 * glibc's default raises this bound to the size of each big block freed (up to 32 MiB):
 * after the first reload of a big route map, the next generation's tables then came from
 * the heap, and a freed generation stayed resident (1,000,000 names: 78 MiB steady, 129,
 * 181, 231 MiB after three reloads). Fixed, every generation's big arrays (route slots,
 * arena slabs, line tables) go back when it is freed. Everything a connection allocates
 * is far smaller (a peek buffer is at most 256 KiB), so the connection path is unchanged. */
#define SR_MMAP_THRESHOLD (1u << 20)

/* Directories watched at most (the main file's and one per include, deduplicated). */
#define SR_WATCH_DIRS_MAX 64

/* One watched directory: the handle is freed in its close callback. */
struct watch_dir {
    uv_fs_event_t handle;
    struct daemon *d;
    char path[];
};

/* What the running daemon needs in its signal callbacks. */
struct daemon {
    const char *path;
    struct sr_shared shared; /* what the workers share, the access log among it */
    struct sr_workers workers;
    struct sr_generation *gen; /* the newest generation handed to the workers */
    uint64_t n_reloads_ok;
    uint64_t n_reloads_failed;
    bool is_started;
    bool is_draining;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    /* admin = ADDR: /metrics, /healthz, /readyz; running until the server has stopped,
     * so a drain shows as "not ready" rather than as a refused probe. */
    struct sr_admin admin;
    bool has_admin;
    /* watch = yes: the config's directory and the directory of each include are watched
     * (a Kubernetes ConfigMap replaces files by swapping a symlink in it, and a glob's new
     * match is a new entry there), and a change is reloaded once things settle. */
    struct watch_dir *watches[SR_WATCH_DIRS_MAX];
    size_t n_watches;
    uv_loop_t *loop;
    uv_timer_t settle_timer;
    uint64_t config_hash; /* of what the config reads, so a touch does not reload */
    bool is_watching;
    /* SIGUSR2: binary upgrade (upgrade.h). <exe> and <argv> start the new binary. */
    uv_signal_t sigusr2;
    struct sr_upgrade upgrade;
    const char *exe;
    char **argv;
    /* The new process of an upgrade: the open connections old hands over after READY. */
    struct sr_adopter adopter;
};

/* Changes come in bursts (an editor's write and rename, kubelet's symlink dance): reload
 * once, this long after the last event. */
#define SR_WATCH_SETTLE_MS 300

static bool
is_same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
on_reload_error(void *ctx, const char *msg)
{
    (void)ctx;
    sr_log_notice("reload: %s", msg);
}

static void watch_update(struct daemon *d);

/* SIGHUP: read the config again. A config with problems is logged and changes nothing;
 * a valid one takes effect for new connections at once. The access log is reopened either
 * way, so "mv access.log access.log.1 && kill -HUP" rotates it. */
static void
reload(struct daemon *d)
{
    struct sr_generation *next;
    size_t n_errors = 0;
    int rc;

    if (d->is_draining) {
        return;
    }
    if (d->upgrade.is_running) {
        sr_log_notice("reload: an upgrade is in progress; not reloading");
        return;
    }
    next = sr_generation_load(d->path, on_reload_error, NULL, &n_errors);
    if (next == NULL) {
        d->n_reloads_failed++;
        sr_log_notice("reload failed: %zu problem(s) in %s; still running generation %llu",
                      n_errors, d->path, (unsigned long long)d->gen->id);
        return;
    }
    rc = sr_generation_prepare(next, &d->shared);
    /* Opened again even when it is the same path: "mv access.log access.log.1 && kill
     * -HUP" rotates it. Each worker writes its batch out and switches as it takes the new
     * generation; the old file closes once the last of them has. */
    if (rc != 0 || sr_alog_file_open(next->cfg.access_log, &next->alog) != 0) {
        d->n_reloads_failed++;
        sr_generation_unref(next);
        sr_log_notice("reload failed; still running generation %llu",
                      (unsigned long long)d->gen->id);
        return;
    }
    if (!is_same_text(next->cfg.user, d->gen->cfg.user) ||
        !is_same_text(next->cfg.group, d->gen->cfg.group) ||
        next->cfg.workers != d->gen->cfg.workers) {
        sr_log_notice("reload: user, group and workers take effect at the next start");
    }
    next->id = d->gen->id + 1;
    if (d->shared.n_workers == 1) {
        /* One worker, on this loop: apply now, so a failure can be reported as one. */
        rc = sr_server_reload(&d->workers.workers[0].server, sr_generation_ref(next));
    } else {
        sr_workers_reload(&d->workers, next); /* each worker logs its own failure */
        rc = 0;
    }
    if (rc != 0) {
        d->n_reloads_failed++;
        sr_generation_unref(next);
        sr_log_notice("reload failed: %s; still running generation %llu", uv_strerror(rc),
                      (unsigned long long)d->gen->id);
        return;
    }
    sr_generation_unref(d->gen);
    d->gen = next;
    d->n_reloads_ok++;
    atomic_store(&d->shared.is_logging, next->alog != NULL);
    sr_log_notice("reloaded %s: generation %llu", d->path, (unsigned long long)d->gen->id);
    if (d->is_watching) {
        watch_update(d); /* the includes may name other directories now */
    }
}

static void
on_settled(uv_timer_t *timer)
{
    struct daemon *d = timer->data;
    uint64_t h = sr_config_sources_hash(&d->gen->cfg, d->path);

    if (h == 0 || h == d->config_hash) {
        return; /* gone for a moment (a rename in progress), or the same bytes */
    }
    d->config_hash = h;
    sr_log_notice("%s changed; reloading", d->path);
    reload(d);
}

static void
on_config_dir_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    struct watch_dir *w = (struct watch_dir *)handle;

    (void)filename;
    (void)events;
    (void)status;
    uv_timer_start(&w->d->settle_timer, on_settled, SR_WATCH_SETTLE_MS, 0);
}

static void
on_watch_closed(uv_handle_t *handle)
{
    free(handle);
}

/* The directory of <path> into <dir>: "." for a bare name, "/" for a file at the root. */
static void
dir_of(const char *path, char *dir, size_t cap)
{
    char *slash;

    snprintf(dir, cap, "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, cap, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
}

/* Watch the directories the newest generation reads from: the config's and each
 * include's, not the files. Editors and Kubernetes replace files (rename, symlink swap),
 * which a watch on the old inode would not see, and a glob's new match is a new entry.
 * Directories still wanted keep their watch, so no event is lost across a reload. */
static void
watch_update(struct daemon *d)
{
    const struct sr_config *cfg = &d->gen->cfg;
    char want[SR_WATCH_DIRS_MAX][4096];
    struct watch_dir *kept[SR_WATCH_DIRS_MAX];
    size_t n_want = 0;
    size_t n_kept = 0;
    size_t i;
    size_t j;
    int rc;

    dir_of(d->path, want[n_want++], sizeof(want[0]));
    for (i = 0; i < cfg->n_includes; i++) {
        for (j = 0; j < n_want && strcmp(want[j], cfg->includes[i].dir) != 0; j++) {
        }
        if (j < n_want) {
            continue;
        }
        if (n_want == SR_WATCH_DIRS_MAX) {
            sr_log_notice("watch: more than %d directories; not watching %s (reload it with "
                          "SIGHUP)",
                          SR_WATCH_DIRS_MAX, cfg->includes[i].dir);
            continue;
        }
        snprintf(want[n_want++], sizeof(want[0]), "%s", cfg->includes[i].dir);
    }
    for (i = 0; i < d->n_watches; i++) {
        struct watch_dir *w = d->watches[i];

        for (j = 0; j < n_want && strcmp(want[j], w->path) != 0; j++) {
        }
        if (j < n_want) {
            kept[n_kept++] = w;
            want[j][0] = '\0'; /* already watched */
        } else {
            sr_log_notice("watch: no longer watching %s", w->path);
            uv_close((uv_handle_t *)&w->handle, on_watch_closed);
        }
    }
    memcpy(d->watches, kept, n_kept * sizeof(kept[0]));
    d->n_watches = n_kept;
    for (i = 0; i < n_want; i++) {
        size_t len = strlen(want[i]);
        struct watch_dir *w;

        if (len == 0) {
            continue;
        }
        w = malloc(sizeof(*w) + len + 1);
        if (w == NULL) {
            sr_log_notice("watch: out of memory; not watching %s", want[i]);
            continue;
        }
        memcpy(w->path, want[i], len + 1);
        w->d = d;
        uv_fs_event_init(d->loop, &w->handle);
        rc = uv_fs_event_start(&w->handle, on_config_dir_event, w->path, 0);
        if (rc != 0) {
            sr_log_notice("watch: cannot watch %s: %s; reload with SIGHUP instead", w->path,
                          uv_strerror(rc));
            uv_close((uv_handle_t *)&w->handle, on_watch_closed);
            continue;
        }
        sr_log_notice("watching %s for changes to %s", w->path, d->path);
        /* Like the signal handles, it must not keep the loop alive after a drain. */
        uv_unref((uv_handle_t *)&w->handle);
        d->watches[d->n_watches++] = w;
    }
}

static void
watch_start(struct daemon *d, uv_loop_t *loop)
{
    d->loop = loop;
    d->config_hash = sr_config_sources_hash(&d->gen->cfg, d->path);
    uv_timer_init(loop, &d->settle_timer);
    d->settle_timer.data = d;
    d->is_watching = true;
    uv_unref((uv_handle_t *)&d->settle_timer);
    watch_update(d);
}

static void
watch_stop(struct daemon *d)
{
    size_t i;

    for (i = 0; i < d->n_watches; i++) {
        uv_close((uv_handle_t *)&d->watches[i]->handle, on_watch_closed);
    }
    d->n_watches = 0;
    uv_close((uv_handle_t *)&d->settle_timer, NULL);
}

static int
on_admin_metrics(void *ctx, char **out, size_t *len)
{
    struct daemon *d = ctx;
    struct sr_server *servers[SR_WORKERS_MAX];
    size_t n = sr_workers_servers(&d->workers, servers, SR_WORKERS_MAX);

    return sr_servers_metrics(servers, n, d->gen->id, d->n_reloads_ok, d->n_reloads_failed, out,
                              len);
}

/* /explain?name=NAME[&alpn=LIST][&listener=L][&from=ADDR]: answered from the newest generation. The
 * admin runs on this loop thread, and reload() swaps d->gen on it too: no lock needed. */
static int
on_admin_explain(void *ctx, const char *query, size_t query_len, char **out, size_t *len)
{
    struct daemon *d = ctx;
    char storage[1024];
    struct sr_explain_query q;
    enum sr_explain_result result;
    const char *why = NULL;
    size_t n;

    if (sr_explain_parse_query(query, query_len, storage, sizeof(storage), &q, &why) != 0) {
        *out = malloc(strlen(why) + 2);
        if (*out == NULL) {
            return -1;
        }
        *len = (size_t)sprintf(*out, "%s\n", why);
        return 400;
    }
    n = sr_explain_format(&d->gen->cfg, d->path, &q, NULL, 0, &result);
    *out = malloc(n + 1);
    if (*out == NULL) {
        return -1;
    }
    *len = sr_explain_format(&d->gen->cfg, d->path, &q, *out, n + 1, &result);
    return result == SR_EXPLAIN_NO_LISTENER ? 404
           : result == SR_EXPLAIN_BAD_NAME || result == SR_EXPLAIN_BAD_ALPN ||
                   result == SR_EXPLAIN_BAD_FROM
               ? 400
               : 200;
}

static const char *
on_admin_ready(void *ctx)
{
    struct daemon *d = ctx;

    if (d->is_draining) {
        return "draining";
    }
    if (!d->is_started) {
        return "listeners not bound";
    }
    return NULL;
}

static void
on_all_stopped(struct sr_workers *set)
{
    struct daemon *d = set->data;

    sr_adopter_stop(&d->adopter);
    if (d->has_admin) {
        sr_admin_stop(&d->admin);
    }
}

static int
admin_start(struct daemon *d, uv_loop_t *loop, const struct sr_addr *addr)
{
    struct sockaddr_storage ss;
    char text[SR_SOCKADDR_TEXT_MAX];
    int rc;

    if (addr->kind == SR_ADDR_IPV6) {
        rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
    }
    if (rc == 0) {
        /* After a binary upgrade the old process's admin socket is ours. */
        int fd = sr_inherited_take(d->shared.inherited, (const struct sockaddr *)&ss, 0);

        rc = sr_admin_start_fd(&d->admin, loop, (const struct sockaddr *)&ss, fd, on_admin_metrics,
                               on_admin_ready, d);
    }
    if (rc != 0) {
        sr_addr_format(addr, text, sizeof(text));
        sr_log_notice("admin: cannot listen on %s: %s", text, uv_strerror(rc));
        return rc;
    }
    d->has_admin = true;
    sr_admin_set_explain(&d->admin, on_admin_explain);
    sr_addr_format_sockaddr((const struct sockaddr *)&d->admin.addr, text, sizeof(text));
    sr_log_notice("admin on %s (/metrics, /healthz, /readyz, /explain)", text);
    return 0;
}

static void
on_signal(uv_signal_t *handle, int signum)
{
    struct daemon *d = handle->data;
    const char *name = signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "SIGHUP";

    if (signum == SIGHUP) {
        reload(d);
        return;
    }
    if (!d->is_draining) {
        sr_log_notice("%s: no longer accepting; draining", name);
    } else {
        sr_log_notice("%s again: closing every connection now", name);
    }
    d->is_draining = true;
    sr_upgrade_abort(&d->upgrade);
    /* Connections an old process still holds stay there (it drains them); those already
     * queued on the socket are taken first. */
    sr_adopter_stop(&d->adopter);
    sr_workers_drain(&d->workers);
}

static size_t
on_upgrade_collect(struct sr_upgrade *up, int *fds, size_t cap)
{
    struct daemon *d = up->data;
    struct sr_listen_fd got[SR_UPGRADE_FDS_MAX];
    size_t n = sr_workers_listen_fds(&d->workers, got,
                                     cap < SR_UPGRADE_FDS_MAX ? cap : SR_UPGRADE_FDS_MAX);
    uv_os_fd_t fd;
    size_t i;

    for (i = 0; i < n; i++) {
        fds[i] = got[i].fd;
    }
    /* The admin socket too: the new process could not bind its address beside ours. */
    if (d->has_admin && d->admin.is_listening && n < cap &&
        uv_fileno((const uv_handle_t *)&d->admin.listener, &fd) == 0) {
        fds[n] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        n += fds[n] >= 0;
    }
    return n;
}

/* The new process is serving (or failed, already logged: nothing changes). */
static void
on_upgrade_done(struct sr_upgrade *up, int status)
{
    struct daemon *d = up->data;

    if (status != 0 || d->is_draining) {
        if (up->handover_fd >= 0) {
            close(up->handover_fd);
            up->handover_fd = -1;
        }
        return;
    }
    sr_log_notice("upgrade: pid %d took over from pid %d; no longer accepting; draining%s", up->pid,
                  (int)getpid(),
                  up->handover_fd >= 0 ? " (idle connections go to the new process)" : "");
    d->is_draining = true;
    /* Still taking connections over from the process before us? What it has sent goes to
     * our workers before they drain (and so on to the new process); what it still holds
     * it keeps. */
    sr_adopter_stop(&d->adopter);
    /* Before the drain request: each worker hands its idle connections over as it starts
     * draining. Closed once every worker has stopped (run). */
    atomic_store(&d->shared.handover_fd, up->handover_fd);
    up->handover_fd = -1;
    if (d->has_admin) {
        d->has_admin = false;
        sr_admin_stop(&d->admin);
    }
    sr_workers_drain(&d->workers);
}

static void
on_sigusr2(uv_signal_t *handle, int signum)
{
    struct daemon *d = handle->data;

    (void)signum;
    if (d->is_draining || !d->is_started || d->upgrade.n_open > 0) {
        sr_log_notice("SIGUSR2: %s; not upgrading", d->is_draining   ? "draining"
                                                    : !d->is_started ? "not started"
                                                                     : "an upgrade is running");
        return;
    }
    if (getpid() == 1) {
        /* The container ends when PID 1 exits, taking the new process with it. */
        sr_log_notice("SIGUSR2: running as PID 1; not upgrading (roll out a new container)");
        return;
    }
    d->upgrade.collect = on_upgrade_collect;
    d->upgrade.on_done = on_upgrade_done;
    d->upgrade.data = d;
    sr_upgrade_start(&d->upgrade, handle->loop, d->exe, d->argv);
}

static void
signal_watch(uv_loop_t *loop, uv_signal_t *handle, int signum, struct daemon *d)
{
    uv_signal_init(loop, handle);
    handle->data = d;
    uv_signal_start(handle, on_signal, signum);
    /* Signal handles do not keep the loop alive: uv_run returns once the server has closed
     * all of its handles, after a drain. */
    uv_unref((uv_handle_t *)handle);
}

/* The new process: a connection the old one handed over goes to the next worker, with
 * its upstream's metrics row (names are interned on this thread only). */
static void
on_adopt_conn(struct sr_adopter *a, const struct sr_upgrade_conn *rec, int client_fd,
              int backend_fd)
{
    struct daemon *d = a->data;
    uint32_t uid = UINT32_MAX;

    if (rec->label[0] != '\0') {
        uid = sr_metrics_names_intern(&d->shared.upstream_names, rec->label);
    }
    sr_workers_adopt(&d->workers, rec, client_fd, backend_fd, uid);
}

/* workers = auto: one per CPU this process may use. After an upgrade, at least one per
 * socket the old process had for one address, so that every one of them is adopted. */
static size_t
worker_count(const struct sr_config *cfg, const struct sr_inherited *inherited)
{
    size_t n = cfg->workers != 0 ? cfg->workers : (size_t)uv_available_parallelism();
    size_t least = sr_inherited_min_workers(inherited);

    if (least > n) {
        sr_log_notice("upgrade: %zu workers instead of %zu, one per inherited socket (workers "
                      "shrink at the next restart)",
                      least, n);
        n = least;
    }
    return n < 1 ? 1 : n > SR_WORKERS_MAX ? SR_WORKERS_MAX : n;
}

/* kernel_relay: load the BPF program once for every worker, or say why not and relay in
 * the workers. Returns 0, or 1 when kernel_relay = sockmap could not be had. */
static int
kernel_relay_load(struct sr_shared *shared, const struct sr_config *cfg)
{
    size_t max_pairs = cfg->max_connections != 0 ? cfg->max_connections : 65536;
    char why[256];

    if (cfg->kernel_relay == SR_KERNEL_RELAY_OFF) {
        sr_log_notice("relay path: splice (kernel_relay = off)");
        return 0;
    }
    shared->sockmap = sr_sockmap_new(max_pairs, shared->n_workers, why, sizeof(why));
    if (shared->sockmap != NULL) {
        sr_log_notice("relay path: sockmap (BPF, room for %zu connections; splice beyond)",
                      max_pairs);
        return 0;
    }
    if (cfg->kernel_relay == SR_KERNEL_RELAY_SOCKMAP) {
        sr_log_notice("kernel_relay = sockmap: cannot load the BPF program: %s", why);
        return 1;
    }
    sr_log_notice("relay path: splice (kernel_relay = auto: cannot load the BPF program: %s)", why);
    return 0;
}

/* <handoff> and <inherited>: this process is the new one of an upgrade (else -1, NULL). */
static int
run(const char *path, struct sr_generation *gen, const struct account *acc, char **argv,
    int handoff, struct sr_inherited *inherited)
{
    char exe[4096];
    struct daemon d;
    uv_loop_t loop;
    uint64_t n_accepted = 0;
    int status = 0;
    int rc;

    memset(&d, 0, sizeof(d));
    d.path = path;
    d.gen = gen;
    sr_upgrade_exe_path(exe, sizeof(exe), argv[0]);
    d.exe = exe;
    d.argv = argv;
    if (sr_alog_file_open(gen->cfg.access_log, &gen->alog) != 0) {
        sr_generation_unref(gen);
        return 1;
    }
    if (sr_shared_init(&d.shared, worker_count(&gen->cfg, inherited)) != 0 ||
        sr_generation_prepare(gen, &d.shared) != 0) {
        sr_log_notice("out of memory");
        sr_shared_fini(&d.shared);
        sr_generation_unref(gen);
        return 1;
    }
    atomic_store(&d.shared.is_logging, gen->alog != NULL);
    loop.data = NULL; /* uv_loop_init keeps it; the reactor's pointer goes there */
    rc = uv_loop_init(&loop);
    if (rc != 0) {
        sr_log_notice("uv_loop_init: %s", uv_strerror(rc));
        sr_shared_fini(&d.shared);
        sr_generation_unref(gen);
        return 1;
    }
    if (kernel_relay_load(&d.shared, &gen->cfg) != 0) {
        uv_loop_close(&loop);
        sr_shared_fini(&d.shared);
        sr_generation_unref(gen);
        return 1;
    }
    signal_watch(&loop, &d.sigterm, SIGTERM, &d);
    signal_watch(&loop, &d.sigint, SIGINT, &d);
    signal_watch(&loop, &d.sighup, SIGHUP, &d);
    uv_signal_init(&loop, &d.sigusr2);
    d.sigusr2.data = &d;
    uv_signal_start(&d.sigusr2, on_sigusr2, SIGUSR2);
    uv_unref((uv_handle_t *)&d.sigusr2);
    d.shared.inherited = inherited;
    if (inherited != NULL) {
        inherited->n_locks = &d.shared.n_process_locks;
    }
    if (gen->cfg.is_watched) {
        watch_start(&d, &loop);
    }
    if (d.shared.n_workers > 1) {
        sr_log_notice("starting %zu workers", d.shared.n_workers);
    }
    d.workers.on_all_stopped = on_all_stopped;
    d.workers.data = &d;
    rc = sr_workers_start(&d.workers, &loop, &d.shared, gen);
    if (rc != 0) {
        status = 1;
        d.is_draining = true;
    } else if ((gen->cfg.has_admin && admin_start(&d, &loop, &gen->cfg.admin) != 0) ||
               drop_privileges(&gen->cfg, acc) != 0) {
        status = 1;
        d.is_draining = true;
        sr_workers_drain(&d.workers);
    } else {
        d.is_started = true;
    }
    if (handoff >= 0) {
        /* Every worker listens: the old process may stop accepting (or, if we failed, it
         * sees the socket close and keeps serving). */
        sr_inherited_release(inherited);
        if (d.is_started && sr_upgrade_ready(handoff) == 0) {
            /* Then old hands its open connections over on the same socket. */
            rc = sr_adopter_start(&d.adopter, &loop, handoff, inherited->from_pid, on_adopt_conn,
                                  &d);
            if (rc != 0) {
                sr_log_notice("upgrade: cannot watch the handoff socket: %s; open connections "
                              "stay with pid %u",
                              uv_strerror(rc), (unsigned)inherited->from_pid);
            }
        } else {
            close(handoff);
        }
    }
    sr_reactor_run(&loop); /* with one worker, its reactor is this loop's */
    n_accepted = sr_workers_fini(&d.workers);
    if (status == 0) {
        char kernel_relayed[64] = ""; /* said only when the kernel relay is on */

        if (d.shared.sockmap != NULL) {
            snprintf(kernel_relayed, sizeof(kernel_relayed),
                     ", %llu of them through the kernel relay",
                     (unsigned long long)sr_sockmap_joined(d.shared.sockmap));
        }
        sr_log_notice("stopped after %llu connection(s)%s", (unsigned long long)n_accepted,
                      kernel_relayed);
    }

    sr_adopter_stop(&d.adopter);
    if (atomic_load(&d.shared.handover_fd) >= 0) {
        close(atomic_load(&d.shared.handover_fd)); /* no worker sends any more */
        atomic_store(&d.shared.handover_fd, -1);
    }
    uv_close((uv_handle_t *)&d.sigterm, NULL);
    uv_close((uv_handle_t *)&d.sigint, NULL);
    uv_close((uv_handle_t *)&d.sighup, NULL);
    uv_close((uv_handle_t *)&d.sigusr2, NULL);
    if (d.is_watching) {
        watch_stop(&d);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    if (rc != 0) {
        /* A handle left open is a bug of ours; say so rather than hide it. */
        sr_log_notice("uv_loop_close: %s", uv_strerror(rc));
        status = 1;
    }
    sr_sockmap_free(d.shared.sockmap);
    sr_shared_fini(&d.shared); /* the workers' batches were written as their servers stopped */
    sr_generation_unref(d.gen);
    return status;
}

int
main(int argc, char **argv)
{
    const char *path = SR_DEFAULT_CONFIG;
    struct error_count errors = {0};
    struct sr_inherited inherited;
    struct sr_generation *gen;
    struct account acc;
    int handoff = sr_upgrade_env_fd();
    int status;
    size_t n_errors = 0;
    int is_check = 0;
    int is_strict = 0;
    size_t n_warnings;
    int i;

#ifdef M_MMAP_THRESHOLD
    (void)mallopt(M_MMAP_THRESHOLD, SR_MMAP_THRESHOLD);
#endif
    if (argc >= 2 && strcmp(argv[1], "peek") == 0) {
        bool is_quic = argc >= 3 && strcmp(argv[2], "--quic") == 0;

        if (argc > (is_quic ? 4 : 3)) {
            usage(stderr);
            return 2;
        }
        if (is_quic) {
            return sr_peek_quic_run(argc == 4 ? argv[3] : NULL, stdout, stderr);
        }
        return sr_peek_run(argc == 3 ? argv[2] : NULL, stdout, stderr);
    }
    if (argc >= 2 && strcmp(argv[1], "selftest") == 0) {
        return sr_selftest_main(argc - 1, argv + 1, stdout, stderr);
    }
    if (argc >= 2 && strcmp(argv[1], "explain") == 0) {
        return sr_explain_run(argc - 1, argv + 1, SR_DEFAULT_CONFIG, stdout, stderr);
    }
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0) {
            is_check = 1;
        } else if (strcmp(argv[i], "--strict") == 0) {
            is_strict = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("sniroute %s (libuv %s)\n", SNIROUTE_VERSION, uv_version_string());
            return 0;
        } else {
            fprintf(stderr, "sniroute: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    /* A closed peer must give EPIPE on write, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    /* Nor an upgrade asked too early (the handler comes with the loop). */
    signal(SIGUSR2, SIG_IGN);

    gen = sr_generation_load(path, on_config_error, &errors, &n_errors);
    if (gen == NULL) {
        fprintf(stderr, "%s: %zu problem(s); %s\n", path, n_errors,
                is_check ? "not valid" : "not starting");
        return 1;
    }
    n_errors = account_lookup(path, &gen->cfg, &acc);
    if (n_errors > 0) {
        fprintf(stderr, "%s: %zu problem(s); %s\n", path, n_errors,
                is_check ? "not valid" : "not starting");
        sr_generation_unref(gen);
        return 1;
    }
    if (is_check) {
        n_warnings = sr_lint_print(&gen->cfg, path, stderr);
        if (is_strict && n_warnings > 0) {
            fprintf(stderr, "%s: %zu warning(s); not valid (--strict)\n", path, n_warnings);
            sr_generation_unref(gen);
            return 1;
        }
        if (n_warnings > 0) {
            printf("%s: ok, %zu warning(s)\n", path, n_warnings);
        } else {
            printf("%s: ok\n", path);
        }
        sr_generation_unref(gen);
        return 0;
    }
    if (handoff < 0) {
        return run(path, gen, &acc, argv, -1, NULL);
    }
    /* Binary upgrade: the config is valid; take the old process's sockets. */
    if (sr_upgrade_receive(handoff, &inherited) != 0) {
        close(handoff);
        sr_inherited_fini(&inherited);
        sr_generation_unref(gen);
        return 1;
    }
    status = run(path, gen, &acc, argv, handoff, &inherited);
    sr_inherited_fini(&inherited);
    return status;
}
