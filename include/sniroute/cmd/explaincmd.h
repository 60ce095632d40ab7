/* SPDX-License-Identifier: MIT */
/* The `sniroute explain` subcommand (see explain.h for what it prints). */
#ifndef SR_EXPLAINCMD_H
#define SR_EXPLAINCMD_H

#include <stdio.h>

/* Run `explain` with <argv>[0] == "explain": load -c FILE (<default_path> without -c),
 * explain NAME [ALPN] (--from ADDRESS: for that client) on <out>; problems go to <err>.
 * Returns the exit status: 0 routed (by every listener shown), 1 no route or the client
 * refused by an access rule (by at least one), 2 usage or config error. */
int sr_explain_run(int argc, char **argv, const char *default_path, FILE *out, FILE *err);

#endif
