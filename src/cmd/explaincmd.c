/* SPDX-License-Identifier: MIT */
/* `sniroute explain [-c FILE] [--listener NAME] [--from ADDRESS] NAME [ALPN]`: load the config
 * (nothing is bound, nothing resolved) and print what sr_explain_format() says about NAME. */
#include "sniroute/cmd/explaincmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/config.h"
#include "sniroute/config/explain.h"

static void
on_config_error(void *ctx, const char *msg)
{
    fprintf(ctx, "%s\n", msg);
}

static int
usage(FILE *err)
{
    fprintf(err, "usage: sniroute explain [-c FILE] [--listener NAME] [--from ADDRESS] NAME "
                 "[ALPN[,ALPN...]]\n");
    return 2;
}

int
sr_explain_run(int argc, char **argv, const char *default_path, FILE *out, FILE *err)
{
    const char *path = default_path;
    struct sr_explain_query q;
    enum sr_explain_result result;
    const char *args[2] = {NULL, NULL};
    size_t n_args = 0;
    struct sr_config cfg;
    size_t n_errors;
    size_t len;
    char *text;
    int i;

    memset(&q, 0, sizeof(q));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--listener") == 0 && i + 1 < argc) {
            q.listener = argv[++i];
            q.listener_len = strlen(q.listener);
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            q.from = argv[++i];
            q.from_len = strlen(q.from);
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(out);
            return 0;
        } else if (argv[i][0] == '-' || n_args == 2) {
            fprintf(err, "sniroute explain: unexpected argument '%s'\n", argv[i]);
            return usage(err);
        } else {
            args[n_args++] = argv[i];
        }
    }
    if (n_args == 0) {
        return usage(err);
    }
    q.name = args[0];
    q.name_len = strlen(args[0]);
    q.alpn = args[1];
    q.alpn_len = args[1] != NULL ? strlen(args[1]) : 0;

    n_errors = sr_config_load(&cfg, path, on_config_error, err);
    if (n_errors > 0) {
        fprintf(err, "%s: %zu problem(s); not valid\n", path, n_errors);
        sr_config_fini(&cfg);
        return 2;
    }
    len = sr_explain_format(&cfg, path, &q, NULL, 0, &result);
    text = malloc(len + 1);
    if (text == NULL) {
        fprintf(err, "sniroute explain: out of memory\n");
        sr_config_fini(&cfg);
        return 2;
    }
    sr_explain_format(&cfg, path, &q, text, len + 1, &result);
    fputs(text, result == SR_EXPLAIN_ROUTED || result == SR_EXPLAIN_NO_ROUTE ||
                        result == SR_EXPLAIN_DENIED
                    ? out
                    : err);
    free(text);
    sr_config_fini(&cfg);
    return sr_explain_exit_status(result);
}
