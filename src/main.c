/* SPDX-License-Identifier: MIT */
/* The command line: run the router (-c), check a config (-t), or show what the parser finds
 * in raw ClientHello bytes (peek). The only place that decides the exit status; it owns the
 * loop, the config and the server, and tears all of them down before it returns. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sniroute/config.h"
#include "sniroute/log.h"
#include "sniroute/peek.h"
#include "sniroute/proxy.h"

#define SR_DEFAULT_CONFIG "/etc/sniroute/sniroute.ini"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: sniroute [-c FILE]        run the router (default config: %s)\n"
            "       sniroute -t [-c FILE]     check the config and exit: 0 if valid, 1 if not\n"
            "       sniroute peek [FILE]      show what a raw ClientHello (FILE or stdin) says\n"
            "       sniroute -h | -V          help, version\n"
            "\n"
            "sniroute routes TLS connections by the server name in the ClientHello, without\n"
            "decrypting anything. SIGTERM or SIGINT stop accepting and let open connections\n"
            "finish (up to drain_timeout); a second one closes them at once.\n",
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

/* stdout/stderr/off/PATH. A file is opened for append so rotation by rename + reopen on
 * restart loses nothing. */
static int
open_access_log(const char *spec, FILE **out)
{
    if (strcmp(spec, "off") == 0) {
        *out = NULL;
    } else if (strcmp(spec, "stdout") == 0) {
        *out = stdout;
    } else if (strcmp(spec, "stderr") == 0) {
        *out = stderr;
    } else {
        *out = fopen(spec, "a");
        if (*out == NULL) {
            sr_log_notice("cannot open access_log %s: %s", spec, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void
on_signal(uv_signal_t *handle, int signum)
{
    struct sr_server *server = handle->data;

    if (!server->is_draining) {
        sr_log_notice("%s: no longer accepting; draining",
                      signum == SIGTERM ? "SIGTERM" : "SIGINT");
    } else {
        sr_log_notice("%s again: closing every connection now",
                      signum == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    sr_server_drain(server);
}

static int
run(const struct sr_config *cfg)
{
    struct sr_server server;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    FILE *access_log = NULL;
    uv_loop_t loop;
    int status = 0;
    int rc;

    if (open_access_log(cfg->access_log, &access_log) != 0) {
        return 1;
    }
    rc = uv_loop_init(&loop);
    if (rc != 0) {
        sr_log_notice("uv_loop_init: %s", uv_strerror(rc));
        goto out_log;
    }
    /* Signal handles do not keep the loop alive: uv_run returns once the server has
     * closed all of its handles, after a drain. */
    uv_signal_init(&loop, &sigterm);
    uv_signal_init(&loop, &sigint);
    sigterm.data = &server;
    sigint.data = &server;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_unref((uv_handle_t *)&sigterm);
    uv_unref((uv_handle_t *)&sigint);

    rc = sr_server_start(&server, &loop, cfg, access_log);
    if (rc != 0) {
        status = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (status == 0) {
        sr_log_notice("stopped after %llu connection(s)", (unsigned long long)server.n_accepted);
    }
    sr_server_fini(&server);

    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    if (rc != 0) {
        /* A handle left open is a bug of ours; say so rather than hide it. */
        sr_log_notice("uv_loop_close: %s", uv_strerror(rc));
        status = 1;
    }
out_log:
    if (access_log != NULL && access_log != stdout && access_log != stderr) {
        fclose(access_log);
    }
    return status;
}

int
main(int argc, char **argv)
{
    const char *path = SR_DEFAULT_CONFIG;
    struct error_count errors = {0};
    struct sr_config cfg;
    int is_check = 0;
    int status;
    int i;

    if (argc >= 2 && strcmp(argv[1], "peek") == 0) {
        if (argc > 3) {
            usage(stderr);
            return 2;
        }
        return sr_peek_run(argc == 3 ? argv[2] : NULL, stdout, stderr);
    }
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0) {
            is_check = 1;
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

    sr_config_load(&cfg, path, on_config_error, &errors);
    if (errors.n > 0) {
        fprintf(stderr, "%s: %zu problem(s); %s\n", path, errors.n,
                is_check ? "not valid" : "not starting");
        sr_config_fini(&cfg);
        return 1;
    }
    if (is_check) {
        printf("%s: ok\n", path);
        sr_config_fini(&cfg);
        return 0;
    }
    status = run(&cfg);
    sr_config_fini(&cfg);
    return status;
}
