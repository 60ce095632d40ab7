/* SPDX-License-Identifier: MIT */
/* One TCP connection's lifetime (conn.h): accept, the socket events and deadlines, the
 * refusals (an answer, then a lingering close), the close with its access-log line, and
 * the free after the batch. The work is done a step below, each step reporting what
 * happened: intake.c reads the first bytes and routes them, connect.c resolves, connects
 * and sends them, relay.c moves the rest both ways, handover.c moves an idle connection
 * to a new process in a binary upgrade. Nothing below calls back up here except
 * connect.c's resolver callback, which conn.c hands it.
 *
 * The common case costs no allocation beyond the connection itself and one system call
 * per step: the hello is read into the worker's scratch buffer and sent to the backend
 * from there right after the non-blocking connect. Everything the way to the relay needs
 * lives in a setup freed when the relay starts, so an established connection holds only
 * what relaying needs. */
#include "sniroute/proxy/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/observe/log.h"
#include "sniroute/proxy/krelay.h"
#include "sniroute/proxy/connect.h"
#include "sniroute/proxy/handover.h"
#include "sniroute/proxy/intake.h"
#include "sniroute/proxy/relay.h"
#include "sniroute/wire/hello.h"
#include "sniroute/wire/http.h"

static void conn_connect(struct sr_conn *conn, size_t index);
static void conn_refuse_with(struct sr_conn *conn, const void *bytes, size_t len,
                             const char *outcome);
static void conn_relayed(struct sr_conn *conn, enum sr_relay_result r);
static void on_client_event(struct sr_watch *watch, uint32_t events);
static void on_backend_event(struct sr_watch *watch, uint32_t events);

static void
conn_deadline(struct sr_conn *conn, uint64_t after_ms)
{
    sr_resources_deadline_set(conn->set->res, &conn->deadline, sr_conn_now(conn) + after_ms);
}

/* --- The set of a worker's connections -------------------------------------------------- */

static void on_reap(struct sr_reactor_task *task);

void
sr_conn_set_init(struct sr_conn_set *set, struct sr_resources *res, struct sr_metrics *metrics,
                 struct sr_shared *shared, size_t worker)
{
    set->res = res;
    set->metrics = metrics;
    set->shared = shared;
    set->worker = worker;
    set->reaper.fn = on_reap;
    set->reaper.is_queued = false;
    if (res->reactor.is_open && sr_krelay_worker_open(set) != 0) {
        sr_log_notice("worker %zu: cannot read the kernel relay's reports: its connections "
                      "relay through the worker",
                      worker);
    }
}

void
sr_conn_set_close(struct sr_conn_set *set)
{
    sr_krelay_worker_close(set);
    sr_reactor_cancel(&set->res->reactor, &set->reaper);
}

/* A connection joins the set at accept and leaves it just before it is freed. */
static void
conn_add(struct sr_conn *conn)
{
    struct sr_conn_set *set = conn->set;

    conn->prev = NULL;
    conn->next = set->head;
    if (set->head != NULL) {
        set->head->prev = conn;
    }
    set->head = conn;
    set->n++;
    set->n_accepted++;
}

/* A closed connection: freed after the current batch of events. */
static void
conn_dead(struct sr_conn *conn)
{
    struct sr_conn_set *set = conn->set;

    sr_reactor_after_batch(&set->res->reactor, &set->reaper);
    conn->next_dead = set->dead;
    set->dead = conn;
}

static void
setup_free(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;

    if (setup == NULL) {
        return;
    }
    conn->setup = NULL;
    if (setup->addrs != NULL) {
        uv_freeaddrinfo(setup->addrs);
    }
    free(setup->peek);
    free(setup->proxy_header);
    sr_resources_setup_put(conn->set->res, setup);
}

static void
conn_free(struct sr_conn *conn)
{
    struct sr_conn_set *set = conn->set;

    setup_free(conn);
    sr_relay_release(conn);
    if (conn->is_pool_counted) {
        sr_pool_conn_end(conn->pool, conn->pool_index);
    }
    if (conn->http_track != NULL) {
        sr_http_track_fini(conn->http_track);
        free(conn->http_track);
    }
    free(conn->http_out.p);
    free(conn->sni);
    free(conn->adopted);
    sr_generation_release(conn->gen, set->worker);
    sr_resources_note_freed(set->res);
    sr_shared_release(set->shared, &conn->adm);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        set->head = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    set->n--;
    free(conn);
    if (set->n == 0 && set->on_empty != NULL) {
        set->on_empty(set);
    }
}

static void
on_reap(struct sr_reactor_task *task)
{
    struct sr_conn_set *set =
        (struct sr_conn_set *)((char *)task - offsetof(struct sr_conn_set, reaper));
    struct sr_conn *conn;

    while ((conn = set->dead) != NULL) {
        set->dead = conn->next_dead;
        conn_free(conn); /* may stop the server: the last use of it here */
    }
}

/* --- The access-log line and the close ------------------------------------------------ */

static void
conn_log(struct sr_conn *conn)
{
    struct sr_access_record rec;
    char upstream[SR_UPGRADE_TEXT_MAX];
    char client[SR_SOCKADDR_TEXT_MAX];
    char line[1024];
    uv_timeval64_t tv;
    size_t len;

    if (!atomic_load_explicit(&conn->set->shared->is_logging, memory_order_relaxed) ||
        conn->is_quiet) {
        return;
    }
    sr_connect_upstream_text(conn, upstream, sizeof(upstream));
    sr_addr_format_sockaddr(&conn->client_addr.sa, client, sizeof(client));
    if (uv_gettimeofday(&tv) != 0) {
        memset(&tv, 0, sizeof(tv));
    }
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
    rec.listener = conn->lcfg->name;
    rec.client = client;
    rec.sni = sr_conn_sni(conn);
    rec.route =
        conn->is_fallback ? "fallback" : sr_route_kind_name((enum sr_route_kind)conn->route);
    rec.upstream = upstream;
    rec.bytes_in = conn->up.n_bytes;
    rec.bytes_out = conn->down.n_bytes;
    rec.duration_ms = sr_conn_now(conn) - conn->start_ms;
    rec.outcome = conn->outcome;
    rec.detail = conn->detail;
    rec.has_ech = conn->has_ech;
    rec.alpn_route = conn->alpn_route;
    rec.rule = conn->denied_by;
    len = conn->gen->cfg.log_format == SR_LOG_FORMAT_JSON
              ? sr_log_format_access_json(line, sizeof(line), &rec)
              : sr_log_format_access(line, sizeof(line), &rec);
    sr_shared_log(conn->set->shared, conn->set->worker, line, len);
}

/* Close one socket, with an RST instead of a FIN if <is_reset> (SO_LINGER with a zero
 * timeout): how a reset on one side is passed on to the other. */
static void
socket_close(struct sr_conn *conn, struct sr_watch *watch, bool is_reset)
{
    if (watch->fd < 0) {
        return;
    }
    if (is_reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        (void)setsockopt(watch->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    sr_watch_close(&conn->set->res->reactor, watch);
}

/* Close everything. <reset_client>/<reset_backend> end that side with an RST instead of a
 * FIN, which is how a reset on one side is passed on to the other. The connection is freed
 * after the current batch of events (one for it may still be in the batch), or once a
 * resolver request in flight has called back. */
static void
conn_close_ex(struct sr_conn *conn, const char *outcome, bool reset_client, bool reset_backend)
{
    if (conn->state == SR_CONN_CLOSING) {
        return;
    }
    if (conn->outcome == NULL) {
        conn->outcome = outcome;
    }
    if (conn->state == SR_CONN_RESOLVING) {
        /* The callback still comes, with UV_ECANCELED unless the lookup already runs. */
        uv_cancel((uv_req_t *)&conn->setup->resolve_req);
    }
    conn->state = SR_CONN_CLOSING;
    sr_relay_settle(conn); /* a kernel-relayed connection's counts, for the line */
    conn_log(conn);
    if (conn->is_counted) {
        /* An adopted connection counts only what this process relayed: the old one
         * counted the rest. */
        const struct sr_conn_adopted *ad = conn->adopted;
        bool has_uid = ad != NULL ? ad->has_uid : conn->upstream != NULL;

        sr_metrics_conn_closed(conn->set->metrics, conn->lid,
                               sr_metrics_outcome_parse(conn->outcome));
        sr_metrics_bytes(conn->set->metrics, conn->lid, has_uid ? conn->uid : UINT32_MAX,
                         conn->up.n_bytes - (ad != NULL ? ad->base_in : 0),
                         conn->down.n_bytes - (ad != NULL ? ad->base_out : 0));
    }
    sr_resources_deadline_clear(conn->set->res, &conn->deadline);
    sr_relay_release(conn); /* pipes and buffers back to the pools now */
    socket_close(conn, &conn->client, reset_client);
    socket_close(conn, &conn->backend, reset_backend);
    if (!conn->is_resolving) {
        conn_dead(conn);
    }
}

void
sr_conn_close(struct sr_conn *conn, const char *outcome)
{
    conn_close_ex(conn, outcome, false, false);
}

void
sr_conn_on_deadline(struct sr_deadline *d)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)d - offsetof(struct sr_conn, deadline));
    uint64_t idle_ms = conn->gen->cfg.idle_timeout_ms;
    uint64_t quiet_ms;
    size_t target;

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_HELLO:
        quiet_ms = sr_conn_now(conn) - conn->start_ms;
        if (conn->setup->peek_len == 0 && conn->lcfg->fallback != 0 &&
            conn->lcfg->fallback_timeout_ms != 0 && quiet_ms >= conn->lcfg->fallback_timeout_ms) {
            if (sr_intake_fallback(conn, &target)) {
                conn_connect(conn, target); /* the client waits for the server to speak first */
                return;
            }
            if (conn->denied_by != NULL) {
                sr_conn_close(conn, "denied"); /* the fallback's rules refuse this client */
                return;
            }
        }
        if (quiet_ms < conn->gen->cfg.hello_timeout_ms) {
            conn_deadline(conn, conn->gen->cfg.hello_timeout_ms - quiet_ms);
            return;
        }
        sr_metrics_hello(conn->set->metrics, SR_METRICS_HELLO_TIMEOUT, SR_HELLO_REASON_NONE);
        sr_conn_close(conn, "hello_timeout");
        return;
    case SR_CONN_RESOLVING:
    case SR_CONN_CONNECTING:
        sr_metrics_connect_failed(conn->set->metrics, conn->uid, SR_METRICS_CONNECT_TIMEOUT);
        sr_conn_close(conn, "connect_timeout");
        return;
    case SR_CONN_REFUSING:
        sr_conn_close(conn, NULL);
        return;
    case SR_CONN_RELAYING: {
        /* Reads only note the time; the deadline moves here for what is left, so the hot
         * path never touches the heap. A kernel-relayed connection learns its time here. */
        uint64_t recheck_ms;
        enum sr_relay_result r = sr_relay_tick(conn, &recheck_ms);

        if (r != SR_RELAY_GOING) {
            conn_relayed(conn, r);
            return;
        }
        quiet_ms = sr_conn_now(conn) - conn->last_active_ms;
        if (quiet_ms >= idle_ms) {
            sr_conn_close(conn, "idle_timeout");
        } else {
            conn_deadline(conn, recheck_ms != 0 && recheck_ms < idle_ms - quiet_ms
                                    ? recheck_ms
                                    : idle_ms - quiet_ms);
        }
        return;
    }
    case SR_CONN_CLOSING:
        return;
    }
}

/* --- Refusing: a TLS alert, then close ------------------------------------------------ */

/* How long a refused client may take to read the alert and close. Closing a socket with
 * unread input sends an RST, which can destroy the alert before the client reads it; so
 * after the alert we send a FIN and drain what the client still sends, for at most this
 * long (nginx calls it a lingering close). */
#define SR_LINGER_MS 2000

/* Everything owed to the client is written: send the FIN and discard what it still sends
 * until it closes or SR_LINGER_MS pass. */
static void
conn_linger(struct sr_conn *conn)
{
    conn->state = SR_CONN_REFUSING;
    conn_deadline(conn, SR_LINGER_MS);
    if (shutdown(conn->client.fd, SHUT_WR) != 0 ||
        sr_watch_set(&conn->set->res->reactor, &conn->client, EPOLLIN) != 0) {
        sr_conn_close(conn, NULL);
    }
}

/* Answer with a fatal TLS alert so the client learns why, instead of a bare reset; in a
 * record of <record_version> (0: 0x0303). */
static void
conn_refuse(struct sr_conn *conn, uint8_t alert, uint16_t record_version, const char *outcome)
{
    uint8_t bytes[SR_HELLO_ALERT_LEN];

    sr_hello_alert_record(bytes, record_version != 0 ? record_version : 0x0303, alert);
    conn_refuse_with(conn, bytes, sizeof(bytes), outcome);
}

/* Send <len> bytes (an alert, an HTTP error response) to the client, then close with a
 * lingering FIN. A fresh socket takes a few bytes at once; if it does not, the client
 * gets the FIN alone. */
static void
conn_refuse_with(struct sr_conn *conn, const void *bytes, size_t len, const char *outcome)
{
    ssize_t n;

    conn->outcome = outcome;
    do {
        n = send(conn->client.fd, bytes, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        sr_conn_close(conn, NULL);
        return;
    }
    conn->down.n_bytes += (uint64_t)n; /* bytes_out tells what the client was sent */
    conn_linger(conn);
}

/* Refusing: discard what the client still sends until it closes. */
static void
linger_read(struct sr_conn *conn)
{
    uint8_t *buf = sr_resources_scratch(conn->set->res, SR_PEEK_INITIAL);
    ssize_t n;

    if (buf == NULL) {
        sr_conn_close(conn, NULL);
        return;
    }
    n = recv(conn->client.fd, buf, conn->set->res->scratch_cap, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        sr_conn_close(conn, NULL); /* EOF or error: the client is done */
    }
}

/* An HTTP listener's answer to a request it cannot route (400 or 421). */
static void
conn_refuse_http(struct sr_conn *conn, int code, const char *outcome)
{
    char text[512];
    size_t len = sr_http_error_response(text, sizeof(text), code);

    if (len == 0) {
        sr_conn_close(conn, outcome);
        return;
    }
    conn_refuse_with(conn, text, len, outcome);
}

/* The outcome and detail of a refused request, set when the refusal ends the connection
 * (until then, a reset or a timeout is what the log says). */
static void
http_refused_outcome(struct sr_conn *conn)
{
    switch ((enum sr_track_result)conn->http_refused) {
    case SR_TRACK_STOP:
        conn->detail = "a later request names a host routed elsewhere";
        break;
    case SR_TRACK_TOO_LARGE:
        conn->detail = "request head too large";
        break;
    case SR_TRACK_UNDECIDABLE:
        conn->detail = "Upgrade or CONNECT after responses that cannot be followed";
        break;
    default:
        conn->detail = "not HTTP/1.x any more";
        break;
    }
    conn->outcome = conn->http_refused == SR_TRACK_STOP ? "host_changed" : "malformed";
    if (conn->http_refused == SR_TRACK_STOP && conn->denied_by != NULL) {
        conn->detail = "a later request's upstream refuses this client";
        conn->outcome = "denied";
    }
}

/* A refused request's turn has come (relay.h, SR_RELAY_HTTP_REFUSED): close the backend,
 * send the client a FIN and discard what it still sends for a short while (a lingering
 * close, so that an RST cannot destroy the responses before the client reads them). */
static void
conn_http_linger(struct sr_conn *conn)
{
    http_refused_outcome(conn);
    sr_relay_release(conn);
    socket_close(conn, &conn->backend, false);
    conn_linger(conn);
}

/* --- Acting on what the steps report ------------------------------------------------- */

/* What the first bytes said. */
static void
conn_intake(struct sr_conn *conn, struct sr_intake_result r)
{
    switch (r.step) {
    case SR_INTAKE_WAIT:
        return;
    case SR_INTAKE_CONNECT:
        conn_connect(conn, r.target);
        return;
    case SR_INTAKE_REFUSE_TLS:
        conn_refuse(conn, r.alert, r.record_version, r.outcome);
        return;
    case SR_INTAKE_REFUSE_HTTP:
        conn_refuse_http(conn, r.http_code, r.outcome);
        return;
    case SR_INTAKE_HTTP_REFUSED:
        http_refused_outcome(conn);
        conn_refuse_http(conn, conn->http_refusal, conn->outcome);
        return;
    case SR_INTAKE_CLOSE:
        sr_conn_close(conn, r.outcome);
        return;
    }
}

/* Everything before the relay is out: let go of the setup and relay. */
static void
conn_relay_start(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;

    conn->up.n_bytes = setup->peek_len;
    if (setup->sni[0] != '\0' &&
        atomic_load_explicit(&conn->set->shared->is_logging, memory_order_relaxed)) {
        conn->sni = strdup(setup->sni); /* for the log line; none if out of memory */
    }
    setup_free(conn);
    /* HTTP: the first request, sent from http_out, is out; its copy goes too. */
    free(conn->http_out.p);
    memset(&conn->http_out, 0, sizeof(conn->http_out));
    conn->state = SR_CONN_RELAYING;
    conn->last_active_ms = sr_conn_now(conn);
    conn_deadline(conn, conn->gen->cfg.idle_timeout_ms);
    conn_relayed(conn, sr_relay_start(conn));
}

/* What connecting said. */
static void
conn_connected(struct sr_conn *conn, struct sr_connect_result r)
{
    switch (r.step) {
    case SR_CONNECT_WAIT:
        return;
    case SR_CONNECT_RELAY:
        conn_relay_start(conn);
        return;
    case SR_CONNECT_CLOSE:
        sr_conn_close(conn, r.outcome);
        return;
    case SR_CONNECT_BACKEND_RESET:
        conn_close_ex(conn, "backend_reset", true, false);
        return;
    }
}

/* The resolver answered (connect.c calls it). */
static void
on_connect_resolved(struct sr_conn *conn, struct sr_connect_result r)
{
    if (conn->state == SR_CONN_CLOSING) {
        conn_dead(conn); /* closed meanwhile: free it now */
        return;
    }
    conn_connected(conn, r);
}

/* Connect to route target <index> of the generation, within connect_timeout. */
static void
conn_connect(struct sr_conn *conn, size_t index)
{
    conn_deadline(conn, conn->gen->cfg.connect_timeout_ms);
    conn_connected(conn, sr_connect_upstream(conn, index, on_connect_resolved));
}

/* What the relay said: go on, or close the way it says. */
static void
conn_relayed(struct sr_conn *conn, enum sr_relay_result r)
{
    switch (r) {
    case SR_RELAY_GOING:
        return;
    case SR_RELAY_DONE:
        sr_conn_close(conn, "ok");
        return;
    case SR_RELAY_CLIENT_RESET:
        conn_close_ex(conn, "client_reset", false, true);
        return;
    case SR_RELAY_BACKEND_RESET:
        conn_close_ex(conn, "backend_reset", true, false);
        return;
    case SR_RELAY_ERROR:
        sr_conn_close(conn, "error");
        return;
    case SR_RELAY_HTTP_REFUSED:
        conn_http_linger(conn);
        return;
    }
}

/* --- Events ----------------------------------------------------------------------------- */

static void
on_client_event(struct sr_watch *watch, uint32_t events)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)watch - offsetof(struct sr_conn, client));

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_HELLO:
        conn_intake(conn, sr_intake_read(conn));
        return;
    case SR_CONN_REFUSING:
        linger_read(conn);
        return;
    case SR_CONN_RESOLVING:
    case SR_CONN_CONNECTING:
        /* More bytes (or a hangup) while we connect: they wait for the relay. Stop
         * watching only now; on the fast path the connect is over before this. */
        (void)sr_watch_set(&conn->set->res->reactor, &conn->client, 0);
        return;
    case SR_CONN_RELAYING:
        conn_relayed(conn, sr_relay_event(conn, true, events));
        return;
    case SR_CONN_CLOSING:
        return;
    }
}

static void
on_backend_event(struct sr_watch *watch, uint32_t events)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)watch - offsetof(struct sr_conn, backend));

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_CONNECTING:
        conn_connected(conn, sr_connect_writable(conn));
        return;
    case SR_CONN_RELAYING:
        conn_relayed(conn, sr_relay_event(conn, false, events));
        return;
    default:
        return;
    }
}

/* --- Accepting -------------------------------------------------------------------------- */

/* The listener's allow and deny rules on the TCP peer, before any byte is read (behind
 * proxy_protocol = accept they wait for the address the header names: intake.c). Returns
 * true when the client is refused: a TLS listener answers with an access_denied alert (no
 * client record seen yet: version 0x0303, as RFC 8446 5.1 has servers write), an HTTP one
 * with a 403, a lingering close after either. */
static bool
conn_admit_access(struct sr_conn *conn)
{
    struct sr_access_result access;

    if (sr_access_check(&conn->lcfg->access, &conn->client_addr.sa, &access)) {
        return false;
    }
    conn->denied_by = access.label;
    conn->denied_id = access.label_id;
    sr_metrics_denied(conn->set->metrics, access.label_id);
    if (conn->lcfg->is_http) {
        conn_refuse_http(conn, 403, "denied");
    } else {
        conn_refuse(conn, SR_TLS_ALERT_ACCESS_DENIED, 0, "denied");
    }
    return true;
}

int
sr_conn_accept(struct sr_conn_set *set, struct sr_generation *gen,
               const struct sr_listener_config *lcfg, int fd, const struct sockaddr *peer)
{
    struct sr_conn_setup *setup;
    enum sr_metrics_limit over;
    const char *limit;
    struct sr_conn *conn;
    int rc;

    conn = calloc(1, sizeof(*conn));
    setup = conn != NULL ? sr_resources_setup_get(set->res, sizeof(*setup)) : NULL;
    if (setup == NULL) {
        free(conn);
        close(fd);
        sr_log_notice("listener %s: out of memory for a connection", lcfg->name);
        return UV_ENOMEM;
    }
    conn->set = set;
    conn->setup = setup;
    conn->gen = sr_generation_hold(gen, set->worker);
    conn->lcfg = lcfg;
    conn->routes = &conn->gen->cfg.routes[lcfg->routes];
    conn->state = SR_CONN_HELLO;
    sr_http_reader_init(&setup->http_reader);
    sr_watch_init(&conn->client, fd, on_client_event);
    sr_watch_init(&conn->backend, -1, on_backend_event);
    sr_deadline_init(&conn->deadline);
    conn->up.pipe_fds[0] = conn->up.pipe_fds[1] = -1;
    conn->down.pipe_fds[0] = conn->down.pipe_fds[1] = -1;
    conn->start_ms = sr_conn_now(conn);
    conn_add(conn);

    if (peer->sa_family == AF_INET || peer->sa_family == AF_INET6) {
        size_t len =
            peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

        memcpy(&setup->peer, peer, len);
        memcpy(&conn->client_addr, peer, len);
    }
    conn->lid = conn->gen->listener_ids[lcfg - conn->gen->cfg.listeners];
    limit = sr_shared_admit(set->shared, &conn->adm, &conn->gen->cfg, conn->lcfg,
                            conn->gen->listener_slots[lcfg - conn->gen->cfg.listeners],
                            (const struct sockaddr *)&setup->peer, &over);
    setup->source_key = conn->adm.ipkey;
    setup->has_source_key = conn->adm.has_ipkey;
    if (limit != NULL) {
        sr_metrics_limit_rejected(set->metrics, conn->lid, over);
        /* Over a limit: closed at once, counted, and not logged line by line (a flood would
         * flood the log too); the server logs a summary at most once a second. */
        conn->is_quiet = true;
        sr_conn_close(conn, limit);
        return 0;
    }
    sr_metrics_conn_accepted(set->metrics, conn->lid);
    conn->is_counted = true;
    if (!conn->lcfg->is_proxy_accepted && conn->lcfg->access.n > 0 && conn_admit_access(conn)) {
        return 0; /* refused by the listener's allow/deny rules, before any byte is read */
    }
    if (conn->lcfg->is_proxy_accepted) {
        /* Only the load balancers in front may say who the client is; from anyone else a
         * PROXY header would be a spoofed address. */
        if (!sr_cidr_list_match(&conn->lcfg->trusted_proxies,
                                (const struct sockaddr *)&setup->peer)) {
            conn->detail = "source not in trusted_proxies";
            sr_conn_close(conn, "untrusted_proxy");
            return 0;
        }
    }
    conn_deadline(conn, sr_intake_timeout_ms(conn));
    rc = sr_watch_set(&set->res->reactor, &conn->client, EPOLLIN);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
    }
    return 0;
}

/* --- Binary upgrade: handing over and adopting established connections ------------------ */

int
sr_conn_hand_over(struct sr_conn *conn, int sock)
{
    bool is_broken = false;
    int rc = sr_handover_send(conn, sock, &is_broken);

    if (rc == 0) {
        /* The new process holds both sockets now: closing ours sends nothing to either
         * peer. One access-log line per connection: the new process writes it, with the
         * totals. */
        conn->outcome = "handed_over";
        conn->is_quiet = true;
        conn_close_ex(conn, "handed_over", false, false);
    } else if (is_broken) {
        sr_conn_close(conn, "error");
    }
    return rc;
}

int
sr_conn_adopt(struct sr_conn_set *set, struct sr_generation *gen, const struct sr_upgrade_conn *rec,
              int client_fd, int backend_fd, uint32_t uid)
{
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    struct sr_conn *conn = sr_handover_adopt(gen, rec, uid, uv_now(set->res->loop));

    if (conn == NULL) {
        close(client_fd);
        close(backend_fd);
        sr_log_notice("upgrade: out of memory taking over a connection");
        return UV_ENOMEM;
    }
    conn->set = set;
    conn->gen = sr_generation_hold(gen, set->worker); /* it is this worker's from here on */
    sr_watch_init(&conn->client, client_fd, on_client_event);
    sr_watch_init(&conn->backend, backend_fd, on_backend_event);
    conn_add(conn);

    /* Limits count it like any other (by the TCP peer, as at accept), but never refuse
     * it: it is open already. */
    memset(&peer, 0, sizeof(peer));
    if (getpeername(client_fd, (struct sockaddr *)&peer, &peer_len) != 0) {
        memset(&peer, 0, sizeof(peer));
    }
    sr_shared_count(set->shared, &conn->adm, gen->listener_slots[conn->lcfg - gen->cfg.listeners],
                    (const struct sockaddr *)&peer);
    sr_metrics_conn_adopted(set->metrics, conn->lid);
    conn->is_counted = true;

    /* O_NONBLOCK belongs to the open file, which the old process set; be sure. */
    if (fcntl(client_fd, F_SETFL, fcntl(client_fd, F_GETFL) | O_NONBLOCK) != 0 ||
        fcntl(backend_fd, F_SETFL, fcntl(backend_fd, F_GETFL) | O_NONBLOCK) != 0) {
        conn->detail = uv_err_name(SR_ERRNO(errno));
        sr_conn_close(conn, "error");
        return 0;
    }
    /* The idle timeout starts again: the old process saw activity we do not know of. */
    conn->last_active_ms = sr_conn_now(conn);
    conn_deadline(conn, gen->cfg.idle_timeout_ms);
    conn_relayed(conn, sr_relay_start(conn));
    return 0;
}
