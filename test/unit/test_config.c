/* SPDX-License-Identifier: MIT */
/* Table-driven tests of the config loader: each case is a small INI text, written to a
 * temporary file, and the exact error lines it must produce (none for a good config).
 * "FILE" in an expected line stands for the temporary file's path. Then the fixtures in
 * SR_CONFIG_DIR, field by field, and a 10k-route config. */
#include "sniroute/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/assert.h"

#define MAX_ERRORS 16

struct config_case {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
    const char *errors[MAX_ERRORS];
};

/* A tail that makes a config complete, for cases about [sniroute]. */
#define GOOD_TAIL "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\ndefault = b:443\n"

static const struct config_case cases[] = {
    {"minimal", GOOD_TAIL, 0, {NULL}},
    {"comments, blank lines, ':' as separator, inline comments",
     "; a comment\n# another\n\n[sniroute] ; the global section\nhello_timeout: 250ms ; short\n"
     "\n" GOOD_TAIL,
     0,
     {NULL}},
    {"CRLF line endings and a byte-order mark",
     "\xEF\xBB\xBF[listener a]\r\nlisten = 127.0.0.1:8443\r\nroutes = m\r\n[routes m]\r\n"
     "default = b:443\r\n",
     0,
     {NULL}},
    {"no newline at the end",
     "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\n"
     "default = b:443",
     0,
     {NULL}},
    {"routes named before their section, and IPv6 listen",
     "[listener a]\nroutes = later\nlisten = [::]:8443\nlisten = 0.0.0.0:8443\n"
     "[routes later]\nexample.com = 127.0.0.1:9001\n",
     0,
     {NULL}},

    /* Sections. */
    {"empty file", "", 0, {"FILE: no [listener NAME] section (at least one is required)"}},
    {"unknown section, its keys ignored",
     "[server]\nport = 1\n" GOOD_TAIL,
     0,
     {"FILE:1: unknown section [server] (want [sniroute], [listener NAME], [routes NAME] or "
      "[upstream NAME])"}},
    {"[sniroute] with a name",
     "[sniroute main]\n" GOOD_TAIL,
     0,
     {"FILE:1: unknown section [sniroute main] (want [sniroute], [listener NAME], [routes "
      "NAME] or [upstream NAME])"}},
    {"[listener] without a name",
     "[listener]\nlisten = 1.2.3.4:1\n" GOOD_TAIL,
     0,
     {"FILE:1: section [listener] needs a name, as in [listener NAME]"}},
    {"[routes] without a name",
     "[ routes ]\nx.com = a:1\n" GOOD_TAIL,
     0,
     {"FILE:1: section [routes] needs a name, as in [routes NAME]"}},
    {"bad section names",
     "[listener a.b]\n[routes x y]\n[listener "
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd]\n" GOOD_TAIL,
     0,
     {"FILE:1: bad listener name 'a.b' (1 to 63 of A-Z a-z 0-9 _ -)",
      "FILE:2: bad routes name 'x y' (1 to 63 of A-Z a-z 0-9 _ -)",
      "FILE:3: bad listener name "
      "'abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd' (1 to 63 of A-Z a-z "
      "0-9 _ -)"}},
    {"a 63-character name and a 49-character one, past inih's section limit",
     "[listener abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc]\nlisten = "
     "127.0.0.1:1\nroutes = abcdefghijabcdefghijabcdefghijabcdefghijabcdefghi\n"
     "[routes abcdefghijabcdefghijabcdefghijabcdefghijabcdefghi]\ndefault = b:1\n",
     0,
     {NULL}},
    {"duplicate sections",
     "[sniroute]\n[sniroute]\nhello_timeout = x\n" GOOD_TAIL
     "[listener a]\nlisten = 127.0.0.1:1\n[routes m]\nx = y\n",
     0,
     {"FILE:2: duplicate section [sniroute] (first at FILE:1)",
      "FILE:9: duplicate listener 'a' (first at FILE:4)",
      "FILE:11: duplicate routes 'm' (first at FILE:7)"}},
    {"key outside any section",
     "listen = 1.2.3.4:1\n" GOOD_TAIL,
     0,
     {"FILE:1: key 'listen' outside any section"}},
    {"section header without ']', its keys ignored",
     "[listener b\nlisten = bad\n" GOOD_TAIL,
     0,
     {"FILE:1: section header without ']'"}},
    {"text after ']'",
     "[listener a] junk\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\n"
     "default = b:1\n",
     0,
     {"FILE:1: unexpected text after ']'"}},
    {"a ';' comment inside brackets",
     "[listener a ;x]\n" GOOD_TAIL,
     0,
     {"FILE:1: section header without ']'"}},

    /* Lines inih would reject. */
    {"no '=' anywhere, each line reported",
     "[sniroute]\nhello_timeout 5s\n" GOOD_TAIL "this is not a key\nexample.com\n",
     0,
     {"FILE:2: expected 'key = value' or '[section]'",
      "FILE:8: expected 'key = value' or '[section]'",
      "FILE:9: expected 'key = value' or '[section]'"}},
    {"'=' only after an inline comment",
     "[sniroute]\nkey ; = 1\n" GOOD_TAIL,
     0,
     {"FILE:2: expected 'key = value' or '[section]'"}},
    {"empty key", "[sniroute]\n= 5s\n" GOOD_TAIL, 0, {"FILE:2: sniroute: empty key"}},
    {"NUL byte",
     "[sniroute]\nhello_timeout = 5\0s\n" GOOD_TAIL,
     sizeof("[sniroute]\nhello_timeout = 5\0s\n" GOOD_TAIL) - 1,
     {"FILE:2: NUL byte in line"}},

    /* Multi-line values: an indented line continues the previous key. */
    {"indented key",
     "[listener a]\nlisten = 127.0.0.1:1\n  routes = m\nroutes = m\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:3: listener 'a': duplicate key 'listen' (an indented line continues the previous "
      "value; remove the indentation)"}},
    {"indented route",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\ndefault = b:1\n"
     "\tx.example.com = c:1\n",
     0,
     {"FILE:6: routes 'm': duplicate key 'default' (an indented line continues the previous "
      "value; remove the indentation)"}},
    {"an indented first key is fine, the indented key after it continues it",
     "[listener a]\n  listen = 127.0.0.1:1\n  routes = m\n[routes m]\n  default = b:1\n",
     0,
     {"FILE:3: listener 'a': duplicate key 'listen' (an indented line continues the previous "
      "value; remove the indentation)",
      "FILE:1: listener 'a': missing key 'routes'"}},
    {"an indented comment is a comment",
     "[listener a]\nlisten = 127.0.0.1:1\n  ; routes = x\nroutes = m\n[routes m]\n"
     "default = b:1\n",
     0,
     {NULL}},

    /* Keys. */
    {"unknown keys",
     "[sniroute]\ntimeout = 5s\n[listener https]\nlisten = 0.0.0.0:8443\nlisen = 1\n"
     "Listen = 0.0.0.0:1\nroutes = m\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: unknown key 'timeout'", "FILE:5: listener 'https': unknown key 'lisen'",
      "FILE:6: listener 'https': unknown key 'Listen'"}},
    {"duplicate keys",
     "[sniroute]\nidle_timeout = 1h\nidle_timeout = 2h\n[listener a]\nlisten = 127.0.0.1:1\n"
     "routes = m\nroutes = m\nno_sni = reject\nno_sni = reject\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:3: sniroute: duplicate key 'idle_timeout' (first at FILE:2)",
      "FILE:7: listener 'a': duplicate key 'routes' (first at FILE:6)",
      "FILE:9: listener 'a': duplicate key 'no_sni' (first at FILE:8)"}},

    /* Durations and sizes. */
    {"bad durations",
     "[sniroute]\nhello_timeout = 5\nconnect_timeout = 0s\nidle_timeout = 5 s\n"
     "drain_timeout = 1.5s\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: hello_timeout: bad duration '5' (want an integer and a unit: ms, s, m "
      "or h, as in 5s)",
      "FILE:3: sniroute: connect_timeout: bad duration '0s' (must be more than 0)",
      "FILE:4: sniroute: idle_timeout: bad duration '5 s' (want an integer and a unit: ms, s, m "
      "or h, as in 5s)",
      "FILE:5: sniroute: drain_timeout: bad duration '1.5s' (want an integer and a unit: ms, s, "
      "m or h, as in 5s)"}},
    {"more bad durations",
     "[sniroute]\nhello_timeout = -5s\nconnect_timeout = 5S\nidle_timeout = 8761h\n"
     "drain_timeout =\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: hello_timeout: bad duration '-5s' (want an integer and a unit: ms, s, "
      "m or h, as in 5s)",
      "FILE:3: sniroute: connect_timeout: bad duration '5S' (want an integer and a unit: ms, s, "
      "m or h, as in 5s)",
      "FILE:4: sniroute: idle_timeout: bad duration '8761h' (at most 8760h)",
      "FILE:5: sniroute: drain_timeout: bad duration '' (want an integer and a unit: ms, s, m "
      "or h, as in 5s)"}},
    {"bad sizes",
     "[sniroute]\nmax_hello_size = 511\n" GOOD_TAIL "[sniroute]\n",
     0,
     {"FILE:2: sniroute: max_hello_size: bad size '511' (must be 512..262144 bytes)",
      "FILE:8: duplicate section [sniroute] (first at FILE:1)"}},
    {"upstream pools and PROXY protocol: errors",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\nproxy_protocol = accept\n"
     "[listener b]\nlisten = 127.0.0.1:2\nroutes = m\ntrusted_proxies = 10.1.2.3/8 ::1/129\n"
     "proxy_protocol = maybe\n"
     "[upstream apps]\nserver = 10.0.0.1:443\nserver = 10.0.0.1:443\nserver = x\n"
     "balance = fastest\nproxy_protocol = v3\n[upstream empty]\n"
     "[routes m]\na.com = apps\nb.com = nowhere\nc.com = empty\n",
     0,
     {"FILE:8: listener 'b': trusted_proxies: '10.1.2.3/8': address has bits set beyond the "
      "prefix length (did you mean 10.0.0.0/8?)",
      "FILE:8: listener 'b': trusted_proxies: '::1/129': prefix length must be 0..32 for IPv4, "
      "0..128 for IPv6",
      "FILE:9: listener 'b': proxy_protocol: bad value 'maybe' (accept or none)",
      "FILE:12: upstream 'apps': server: '10.0.0.1:443' listed twice",
      "FILE:13: upstream 'apps': server: bad address 'x': missing ':port'",
      "FILE:14: upstream 'apps': balance: bad value 'fastest' (round_robin, least_conn, "
      "random_two or source_hash)",
      "FILE:15: upstream 'apps': proxy_protocol: bad value 'v3' (v1, v2 or none)",
      "FILE:1: listener 'a': proxy_protocol = accept needs trusted_proxies (the CIDRs of the "
      "load balancers in front)",
      "FILE:16: upstream 'empty': no server (add server = HOST:PORT)",
      "FILE:19: routes 'm': route 'b.com': bad upstream 'nowhere': missing ':port' (or no "
      "[upstream nowhere])"}},
    {"fallback",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\nfallback = ssh\nfallback_timeout = 2\n"
     "[listener b]\nlisten = 127.0.0.1:2\nroutes = m\nfallback_timeout = 3s\n"
     "[routes m]\ndefault = b:1\n",
     0,
     {"FILE:5: listener 'a': fallback_timeout: bad duration '2' (want an integer and a unit: "
      "ms, s, m or h, as in 5s)",
      "FILE:6: listener 'b': fallback_timeout without fallback",
      "FILE:4: listener 'a': fallback: bad upstream 'ssh': missing ':port' (or no [upstream "
      "ssh])"}},
    {"workers",
     "[sniroute]\nworkers = 0\nworkers = lots\n[listener a]\nlisten = 127.0.0.1:0\n"
     "routes = m\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: workers: bad value '0' (auto, or 1..64)",
      "FILE:3: sniroute: duplicate key 'workers' (first at FILE:2)"}},
    {"kernel_relay",
     "[sniroute]\nkernel_relay = sideways\n[listener a]\nlisten = 127.0.0.1:1\n"
     "routes = m\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: kernel_relay: bad value 'sideways' (off, auto or sockmap)"}},
    {"workers need fixed ports",
     "[sniroute]\nworkers = auto\n[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n"
     "[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: workers: listener 'a' listens on port 0, which needs workers = 1"}},
    {"ALPN routes: errors",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\n"
     "x.com[acme-tls/1] = 127.0.0.1:1\nx.com[acme-tls/1] = 127.0.0.1:2\nx.com[] = 127.0.0.1:3\n"
     "y.com[h2 = 127.0.0.1:5\ndefault = 127.0.0.1:6\n",
     0,
     {"FILE:6: routes 'm': duplicate route 'x.com[acme-tls/1]' (first at FILE:5)",
      "FILE:7: routes 'm': bad route 'x.com[]': an ALPN condition is NAME[PROTOCOL], 1 to 64 "
      "characters, as in example.com[acme-tls/1]",
      "FILE:8: routes 'm': bad route 'y.com[h2': an ALPN condition is NAME[PROTOCOL], 1 to 64 "
      "characters, as in example.com[acme-tls/1]"}},
    {"protocol",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\nprotocol = gopher\n[routes m]\n"
     "default = b:1\n",
     0,
     {"FILE:4: listener 'a': protocol: bad value 'gopher' (tls, http or quic)"}},

    /* QUIC (issue 13). */
    {"quic: a TCP and a QUIC listener on one address share a table",
     "[sniroute]\nquic_idle_timeout = 30s\nmax_quic_flows = 5000\nmax_quic_flows_per_ip = 0\n"
     "quic_hold_bytes = 16k\n"
     "[listener https]\nlisten = 0.0.0.0:443\nroutes = m\n"
     "[listener h3]\nlisten = 0.0.0.0:443\nlisten = [::]:443\nroutes = m\nprotocol = quic\n"
     "no_sni = reject\n[routes m]\nexample.com[h3] = 127.0.0.1:1\ndefault = b:1\n",
     0,
     {NULL}},
    {"quic: the same address twice for one transport",
     "[listener h3]\nlisten = 0.0.0.0:443\nprotocol = quic\nroutes = m\n"
     "[listener tls]\nlisten = 127.0.0.1:443\nlisten = 0.0.0.0:443\nroutes = m\n"
     "[listener again]\nlisten = 127.0.0.1:443\nlisten = 0.0.0.0:443\nroutes = m\n"
     "max_connections = 0\nprotocol = quic\n[routes m]\ndefault = b:1\n",
     0,
     {"FILE:11: listener 'again': listen address '0.0.0.0:443' already used (first at FILE:2)"}},
    {"quic: TCP-only options, in line order with a clash",
     "[listener tcp]\nlisten = 127.0.0.1:1\nroutes = m\n"
     "[listener q]\nfallback = 127.0.0.1:22\nlisten = 127.0.0.1:2\nproxy_protocol = accept\n"
     "trusted_proxies = 10.0.0.0/8\nlisten = 127.0.0.1:3\nmax_connections = 5\nprotocol = quic\n"
     "[listener q2]\nlisten = 127.0.0.1:2\nprotocol = quic\nroutes = m\n"
     "[listener q3]\nprotocol = tls\nlisten = 127.0.0.1:2\nroutes = m\n"
     "[routes m]\ndefault = b:1\n[listener q4]\nroutes = m\nlisten = 127.0.0.1:4\n"
     "protocol = quic\nproxy_protocol = none\nmax_connections = 0\n",
     0,
     {"FILE:5: listener 'q': fallback does not apply to protocol = quic (a TCP listener's "
      "option)",
      "FILE:7: listener 'q': proxy_protocol = accept does not apply to protocol = quic (a TCP "
      "listener's option)",
      "FILE:10: listener 'q': max_connections does not apply to protocol = quic (a TCP "
      "listener's option)",
      "FILE:13: listener 'q2': listen address '127.0.0.1:2' already used (first at FILE:6)",
      "FILE:4: listener 'q': missing key 'routes'"}},
    {"quic: bad values",
     "[sniroute]\nquic_hold_bytes = 1200\nmax_quic_flows = many\nquic_idle_timeout = 0s\n"
     "max_quic_flows_per_ip = -1\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: quic_hold_bytes: bad size '1200' (must be 2400..1048576 bytes)",
      "FILE:3: sniroute: max_quic_flows: bad count 'many' (want 0..10000000; 0 means no limit)",
      "FILE:4: sniroute: quic_idle_timeout: bad duration '0s' (must be more than 0)",
      "FILE:5: sniroute: max_quic_flows_per_ip: bad count '-1' (want 0..10000000; 0 means no "
      "limit)"}},
    {"bad counts",
     "[sniroute]\nmax_connections = -1\nmax_connections_per_ip = 10000001\n"
     "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\nmax_connections = 5k\n"
     "[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: max_connections: bad count '-1' (want 0..10000000; 0 means no limit)",
      "FILE:3: sniroute: max_connections_per_ip: bad count '10000001' (want 0..10000000; 0 "
      "means no limit)",
      "FILE:7: listener 'a': max_connections: bad count '5k' (want 0..10000000; 0 means no "
      "limit)"}},
    {"max_new_connections_per_ip: bad rates",
     "[sniroute]\nrate_limit_entries = 63\n"
     "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\nmax_new_connections_per_ip = 50\n"
     "[listener b]\nlisten = 127.0.0.1:8444\nroutes = m\nmax_new_connections_per_ip = 5/h\n"
     "[listener c]\nlisten = 127.0.0.1:8445\nroutes = m\nmax_new_connections_per_ip = 0/s\n"
     "[listener d]\nlisten = 127.0.0.1:8446\nroutes = m\n"
     "max_new_connections_per_ip = 1000001/s\nmax_new_connections_per_ip = 1/s\n"
     "[routes m]\ndefault = b:1\n",
     0,
     {"FILE:2: sniroute: rate_limit_entries: bad count '63' (want 64..16777216)",
      "FILE:6: listener 'a': max_new_connections_per_ip: bad rate '50' (want a count per second "
      "or per minute, as in 50/s or 600/m; 0 means no limit)",
      "FILE:10: listener 'b': max_new_connections_per_ip: bad rate '5/h' (want a count per "
      "second or per minute, as in 50/s or 600/m; 0 means no limit)",
      "FILE:14: listener 'c': max_new_connections_per_ip: bad rate '0/s' (the count must be "
      "1..1000000)",
      "FILE:18: listener 'd': max_new_connections_per_ip: bad rate '1000001/s' (the count must "
      "be 1..1000000)",
      "FILE:19: listener 'd': duplicate key 'max_new_connections_per_ip' (first at FILE:18)"}},
    {"more bad sizes",
     "[sniroute]\nmax_hello_size = 257k\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: max_hello_size: bad size '257k' (must be 512..262144 bytes)"}},
    {"size syntax",
     "[sniroute]\nmax_hello_size = 16kb\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: max_hello_size: bad size '16kb' (want a number of bytes, optionally "
      "with k for x1024, as in 16k)"}},
    {"empty access_log",
     "[sniroute]\naccess_log =\n" GOOD_TAIL,
     0,
     {"FILE:2: sniroute: access_log: empty value"}},

    /* Listeners. */
    {"listen addresses",
     "[listener a]\nlisten = localhost:8443\nlisten = 0.0.0.0:65536\nlisten = ::1:443\n"
     "listen = 127.0.0.1:1\nlisten = 127.0.0.1:1\nroutes = m\n"
     "[listener b]\nlisten = [::1]:443\nlisten = [0:0::1]:443\nroutes = m\n[routes m]\n"
     "default = b:1\n",
     0,
     {"FILE:2: listener 'a': listen address 'localhost:8443' is a host name (use an IPv4 or "
      "IPv6 literal, as in 0.0.0.0:8443 or [::]:8443)",
      "FILE:3: listener 'a': bad listen address '0.0.0.0:65536': port must be 1..65535",
      "FILE:4: listener 'a': bad listen address '::1:443': an IPv6 literal needs brackets, as "
      "in [::1]:443",
      "FILE:6: listener 'a': listen address '127.0.0.1:1' already used (first at FILE:5)",
      "FILE:10: listener 'b': listen address '[0:0::1]:443' already used (first at FILE:9)"}},
    {"listener without listen or routes",
     "[listener a]\nno_sni = reject\n",
     0,
     {"FILE:1: listener 'a': no listen address", "FILE:1: listener 'a': missing key 'routes'"}},
    {"routes naming no section, bad no_sni",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = mian\nno_sni = drop\n[routes main]\n"
     "default = b:1\n[listener b]\nlisten = 127.0.0.2:1\nroutes =\n",
     0,
     {"FILE:4: listener 'a': no_sni: bad value 'drop' (default or reject)",
      "FILE:9: listener 'b': routes: empty value",
      "FILE:3: listener 'a': no [routes mian] section"}},

    /* Routes. */
    {"bad route keys",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\n* = b:1\n*. = b:1\n"
     "**.x = b:1\na.*.b = b:1\n*x.com = b:1\nexa_mple..com = b:1\n*.-x/y = b:1\n",
     0,
     {"FILE:5: routes 'm': bad route '*': a wildcard must be a whole leading label, as in "
      "*.example.com",
      "FILE:6: routes 'm': bad route '*.': a wildcard must be a whole leading label, as in "
      "*.example.com",
      "FILE:7: routes 'm': bad route '**.x': a wildcard must be a whole leading label, as in "
      "*.example.com",
      "FILE:8: routes 'm': bad route 'a.*.b': a wildcard must be a whole leading label, as in "
      "*.example.com",
      "FILE:9: routes 'm': bad route '*x.com': a wildcard must be a whole leading label, as in "
      "*.example.com",
      "FILE:10: routes 'm': bad route 'exa_mple..com': empty label",
      "FILE:11: routes 'm': bad route '*.-x/y': character not allowed in a host name"}},
    {"duplicate routes",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\nexample.com = b:1\n"
     "*.example.com = b:2\ndefault = b:3\nExample.COM. = c:1\n*.EXAMPLE.com = c:2\n"
     "DEFAULT = c:3\n",
     0,
     {"FILE:8: routes 'm': duplicate route 'Example.COM.' (first at FILE:5)",
      "FILE:9: routes 'm': duplicate route '*.EXAMPLE.com' (first at FILE:6)",
      "FILE:10: routes 'm': duplicate route 'DEFAULT' (first at FILE:7)"}},
    {"a duplicate of a route whose upstream was bad is still a duplicate",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\nexample.com = b\n"
     "example.com = b:1\n",
     0,
     {"FILE:6: routes 'm': duplicate route 'example.com' (first at FILE:5)",
      "FILE:5: routes 'm': route 'example.com': bad upstream 'b': missing ':port' (or no "
      "[upstream b])"}},
    {"bad upstreams",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\na.com = 1.2.3.4:99999\n"
     "b.com = [1.2.3.4]:1\nc.com =\nd.com = 127.1:80\n",
     0,
     {"FILE:5: routes 'm': route 'a.com': bad upstream '1.2.3.4:99999': port must be 1..65535",
      "FILE:6: routes 'm': route 'b.com': bad upstream '[1.2.3.4]:1': brackets must hold an "
      "IPv6 literal and be followed by ':port'",
      "FILE:7: routes 'm': route 'c.com': bad upstream '': empty address",
      "FILE:8: routes 'm': route 'd.com': bad upstream '127.1:80': not an IPv4 literal or a "
      "valid host name"}},
    {"empty routes section",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\n; nothing yet\n"
     "[routes unused]\n",
     0,
     {"FILE:4: routes 'm': no routes (add at least one, or a default = HOST:PORT)",
      "FILE:6: routes 'unused': no routes (add at least one, or a default = HOST:PORT)"}},
    {"route keys cannot contain ':'",
     "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\nexample.com:443 = b:1\n",
     0,
     {"FILE:5: routes 'm': route 'example.com': bad upstream '443 = b:1': not an IPv4 literal "
      "or a valid host name"}},
};

struct collected {
    char *lines[64];
    size_t n;
};

static void
on_error(void *ctx, const char *msg)
{
    struct collected *c = ctx;

    ASSERT_LT(c->n, 64);
    c->lines[c->n] = strdup(msg);
    ASSERT(c->lines[c->n] != NULL);
    c->n++;
}

static void
collected_free(struct collected *c)
{
    size_t i;

    for (i = 0; i < c->n; i++) {
        free(c->lines[i]);
    }
    c->n = 0;
}

/* <pattern> with every "FILE" replaced by <path>. */
static char *
expand(const char *pattern, const char *path)
{
    static char buf[4096];
    size_t n = 0;

    while (*pattern != '\0') {
        if (strncmp(pattern, "FILE", 4) == 0) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", path);
            pattern += 4;
        } else {
            buf[n++] = *pattern++;
        }
        ASSERT_LT(n, sizeof(buf) - 1);
    }
    buf[n] = '\0';
    return buf;
}

static void
write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");

    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(text, 1, len, f), len);
    ASSERT_EQ(fclose(f), 0);
}

static char tmp_path[256];

static void
make_tmp_path(void)
{
    const char *dir = getenv("TMPDIR");
    int fd;

    snprintf(tmp_path, sizeof(tmp_path), "%s/sniroute-test-config-XXXXXX",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    fd = mkstemp(tmp_path);
    ASSERT(fd >= 0);
    close(fd);
}

/* Load <text>/<len> and compare the error lines with <errors>; <cfg> is left loaded. */
static void
check_text(const char *name, const char *text, size_t len, const char *const *errors,
           struct sr_config *cfg)
{
    struct collected got = {{NULL}, 0};
    size_t n_want = 0;
    size_t n;
    size_t i;

    write_file(tmp_path, text, len);
    n = sr_config_load(cfg, tmp_path, on_error, &got);
    while (n_want < MAX_ERRORS && errors[n_want] != NULL) {
        n_want++;
    }
    for (i = 0; i < got.n || i < n_want; i++) {
        const char *want = i < n_want ? expand(errors[i], tmp_path) : "(nothing)";
        const char *have = i < got.n ? got.lines[i] : "(nothing)";

        if (strcmp(want, have) != 0) {
            for (n = 0; n < got.n; n++) {
                fprintf(stderr, "  got: %s\n", got.lines[n]);
            }
            SR_FAIL("case \"%s\", error %zu:\n  want: %s\n  have: %s", name, i, want, have);
        }
    }
    ASSERT_EQ(n, got.n);
    collected_free(&got);
}

static void
test_cases(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct config_case *c = &cases[i];
        struct sr_config cfg;

        check_text(c->name, c->text, c->len ? c->len : strlen(c->text), c->errors, &cfg);
        sr_config_fini(&cfg);
    }
}

/* A line of <n> bytes in a [routes] section: "x...x.example = b:1" padded with spaces. */
static void
test_line_length(void)
{
    static const char head[] =
        "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\ndefault = b:1\n";
    char text[1024];
    char line[400];
    const char *none[] = {NULL};
    const char *too_long[] = {"FILE:6: line too long (max 199 bytes)", NULL};
    const char *too_long_section[] = {"FILE:6: line too long (max 199 bytes)", NULL};
    struct sr_config cfg;
    struct sr_route_hit hit;
    size_t n;

    /* Exactly the limit: 199 bytes, accepted, and the route is there. */
    memset(line, ' ', sizeof(line));
    memcpy(line, "long.example = c:1", 18);
    line[199] = '\0';
    snprintf(text, sizeof(text), "%s%s\nshort.example = d:1\n", head, line);
    check_text("199-byte line", text, strlen(text), none, &cfg);
    ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "long.example", 12, &hit), SR_ROUTE_EXACT);
    sr_config_fini(&cfg);

    /* The same with a CRLF ending: the line ending does not count. */
    snprintf(text, sizeof(text), "%s%s\r\nshort.example = d:1\n", head, line);
    check_text("199-byte line, CRLF", text, strlen(text), none, &cfg);
    sr_config_fini(&cfg);

    /* One more byte, and 300: refused, and the tail is not read as a line of its own. */
    for (n = 200; n <= 300; n += 100) {
        memset(line, ' ', sizeof(line));
        memcpy(line, "long.example = c:1", 18);
        memcpy(line + n - 18, "tail.example = e:1", 18);
        line[n] = '\0';
        snprintf(text, sizeof(text), "%s%s\nshort.example = d:1\n", head, line);
        check_text("too long", text, strlen(text), too_long, &cfg);
        ASSERT_EQ(sr_route_count(cfg.routes[0].table), 2); /* default, short.example */
        ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "tail.example", 12, &hit), SR_ROUTE_DEFAULT);
        sr_config_fini(&cfg);
    }

    /* A section header too long to read: its keys belong to no section, not to [routes m]. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "[routes ", 8);
    line[300] = '\0';
    snprintf(text, sizeof(text), "%s%s\nshort.example = d:1\n", head, line);
    check_text("too long section", text, strlen(text), too_long_section, &cfg);
    ASSERT_EQ(sr_route_count(cfg.routes[0].table), 1);
    sr_config_fini(&cfg);
}

static void
test_defaults_and_fields(void)
{
    const char *none[] = {NULL};
    struct sr_config cfg;
    struct sr_route_hit hit;

    check_text("defaults", GOOD_TAIL, strlen(GOOD_TAIL), none, &cfg);
    ASSERT_EQ(cfg.hello_timeout_ms, SR_CONFIG_HELLO_TIMEOUT_MS);
    ASSERT_EQ(cfg.connect_timeout_ms, SR_CONFIG_CONNECT_TIMEOUT_MS);
    ASSERT_EQ(cfg.idle_timeout_ms, SR_CONFIG_IDLE_TIMEOUT_MS);
    ASSERT_EQ(cfg.drain_timeout_ms, SR_CONFIG_DRAIN_TIMEOUT_MS);
    ASSERT_EQ(cfg.max_hello_size, SR_CONFIG_MAX_HELLO_SIZE);
    ASSERT_EQ(cfg.max_connections, 0);
    ASSERT_EQ(cfg.max_connections_per_ip, 0);
    ASSERT_EQ(cfg.listeners[0].max_connections, 0);
    ASSERT_STR_EQ(cfg.access_log, "stdout");
    ASSERT_EQ(cfg.n_listeners, 1);
    ASSERT_STR_EQ(cfg.listeners[0].name, "a");
    ASSERT_EQ(cfg.listeners[0].line, 1);
    ASSERT_EQ(cfg.listeners[0].n_listen, 1);
    ASSERT_EQ(cfg.listeners[0].listen[0].kind, SR_ADDR_IPV4);
    ASSERT_STR_EQ(cfg.listeners[0].listen[0].host, "127.0.0.1");
    ASSERT_EQ(cfg.listeners[0].listen[0].port, 8443);
    ASSERT_EQ(cfg.listeners[0].routes, 0);
    ASSERT_EQ(cfg.listeners[0].no_sni, SR_NO_SNI_DEFAULT);
    ASSERT_EQ(cfg.n_routes, 1);
    ASSERT_STR_EQ(cfg.routes[0].name, "m");
    ASSERT_EQ(cfg.routes[0].line, 4);
    ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "x.org", 5, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(hit.value, 0);
    ASSERT_EQ(cfg.n_upstreams, 1);
    ASSERT_STR_EQ(cfg.upstreams[0].addr.host, "b");
    ASSERT_EQ(cfg.upstreams[0].line, 5);
    sr_config_fini(&cfg);
    ASSERT(cfg.listeners == NULL && cfg.access_log == NULL && cfg.n_routes == 0);
    sr_config_fini(&cfg); /* twice is fine: it zeroes */
}

static void
test_limits(void)
{
    static const char text[] = "[sniroute]\nmax_connections = 20000\nmax_connections_per_ip = 0\n"
                               "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n"
                               "max_connections = 300\n[routes m]\ndefault = b:1\n";
    const char *none[] = {NULL};
    struct sr_config cfg;

    check_text("limits", text, strlen(text), none, &cfg);
    ASSERT_EQ(cfg.max_connections, 20000);
    ASSERT_EQ(cfg.max_connections_per_ip, 0);
    ASSERT_EQ(cfg.listeners[0].max_connections, 300);
    ASSERT_EQ(cfg.listeners[0].max_new_conns, 0); /* no rate limit unless asked */
    ASSERT_EQ(cfg.rate_limit_entries, SR_CONFIG_RATE_LIMIT_ENTRIES);
    sr_config_fini(&cfg);
}

static void
test_rate_limit(void)
{
    static const char text[] =
        "[sniroute]\nrate_limit_entries = 1000\n"
        "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\nmax_new_connections_per_ip = 50/s\n"
        "[listener b]\nlisten = 127.0.0.1:8444\nroutes = m\nmax_new_connections_per_ip = 600/m\n"
        "[listener c]\nlisten = 127.0.0.1:8444\nroutes = m\nprotocol = quic\n"
        "max_new_connections_per_ip = 1000000/s\n"
        "[listener d]\nlisten = 127.0.0.1:8445\nroutes = m\nmax_new_connections_per_ip = 0\n"
        "[routes m]\ndefault = b:1\n";
    const char *none[] = {NULL};
    struct sr_config cfg;

    check_text("rate limit", text, strlen(text), none, &cfg);
    ASSERT_EQ(cfg.rate_limit_entries, 1000);
    ASSERT_EQ(cfg.listeners[0].max_new_conns, 50);
    ASSERT_EQ(cfg.listeners[0].max_new_conns_period_ms, 1000);
    ASSERT_EQ(cfg.listeners[1].max_new_conns, 600);
    ASSERT_EQ(cfg.listeners[1].max_new_conns_period_ms, 60000);
    ASSERT_EQ(cfg.listeners[2].max_new_conns, 1000000); /* QUIC: per new flow */
    ASSERT_EQ(cfg.listeners[3].max_new_conns, 0);
    sr_config_fini(&cfg);
}

static void
test_pools(void)
{
    static const char text[] =
        "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\nproxy_protocol = accept\n"
        "trusted_proxies = 10.0.0.0/8, 192.168.1.7\ntrusted_proxies = fd00::/8\n"
        "[routes m]\na.com = apps\nb.com = apps\nc.com = 127.0.0.1:9\n"
        "[upstream apps]\nserver = 10.0.0.1:443\nserver = apps.internal:443\n"
        "balance = least_conn\nproxy_protocol = v2\n";
    const char *none[] = {NULL};
    struct sr_route_hit hit;
    struct sr_config cfg;

    check_text("pools", text, strlen(text), none, &cfg);
    ASSERT(cfg.listeners[0].is_proxy_accepted);
    ASSERT_EQ(cfg.listeners[0].trusted_proxies.n, 3);
    ASSERT_EQ(cfg.n_pools, 1);
    ASSERT_STR_EQ(cfg.pools[0].name, "apps");
    ASSERT_EQ(cfg.pools[0].n_servers, 2);
    ASSERT_STR_EQ(cfg.pools[0].servers[1].host, "apps.internal");
    ASSERT_EQ(cfg.pools[0].balance, SR_POOL_LEAST_CONN);
    ASSERT_EQ(cfg.pools[0].proxy_protocol, SR_PROXY_PROTOCOL_V2);
    /* Both routes share one target, which names the pool; c.com is a plain address. */
    ASSERT_EQ(cfg.n_upstreams, 2);
    ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "a.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(cfg.upstreams[hit.value].pool, 1);
    ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "b.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(cfg.upstreams[hit.value].pool, 1);
    ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "c.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(cfg.upstreams[hit.value].pool, 0);
    ASSERT_EQ(cfg.upstreams[hit.value].addr.port, 9);
    sr_config_fini(&cfg);
}

static void
test_alpn_routes(void)
{
    static const char text[] = "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\n"
                               "x.com = 127.0.0.1:1\n*.x.com[acme-tls/1] = 127.0.0.1:2\n"
                               "default[acme-tls/1] = 127.0.0.1:3\nX.COM[h2] = 127.0.0.1:4\n";
    const char *none[] = {NULL};
    struct sr_route_hit hit;
    struct sr_config cfg;
    const struct sr_routes *r;

    check_text("alpn", text, strlen(text), none, &cfg);
    r = &cfg.routes[0];
    ASSERT_EQ(r->n_alpn, 2);
    ASSERT_STR_EQ(r->alpn[0].proto, "acme-tls/1");
    ASSERT_EQ(r->alpn[0].proto_len, 10);
    ASSERT_EQ(sr_route_lookup(r->alpn[0].table, "a.x.com", 7, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(cfg.upstreams[hit.value].addr.port, 2);
    ASSERT_EQ(sr_route_lookup(r->alpn[0].table, "y.com", 5, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(cfg.upstreams[hit.value].addr.port, 3);
    ASSERT_STR_EQ(r->alpn[1].proto, "h2");
    ASSERT_EQ(sr_route_lookup(r->alpn[1].table, "x.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(cfg.upstreams[hit.value].addr.port, 4);
    ASSERT_EQ(sr_route_lookup(r->table, "x.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(cfg.upstreams[hit.value].addr.port, 1);

    /* Each table knows the line of every route, for explain and lint. */
    ASSERT_EQ(sr_route_lookup(r->table, "x.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(sr_config_route_line(&r->lines, &hit), 5);
    ASSERT_EQ(r->lines.default_line, 0);
    ASSERT_EQ(sr_route_lookup(r->alpn[0].table, "a.x.com", 7, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(sr_config_route_line(&r->alpn[0].lines, &hit), 6);
    ASSERT_EQ(sr_route_lookup(r->alpn[0].table, "y.com", 5, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(sr_config_route_line(&r->alpn[0].lines, &hit), 7);
    ASSERT_EQ(sr_route_lookup(r->alpn[1].table, "x.com", 5, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(sr_config_route_line(&r->alpn[1].lines, &hit), 8);
    ASSERT_EQ(sr_route_lookup(r->alpn[1].table, "y.com", 5, &hit), SR_ROUTE_MISS);
    ASSERT_EQ(sr_config_route_line(&r->alpn[1].lines, &hit), 0);
    ASSERT_EQ(sr_config_entry_line(&r->lines, 12345), 0);
    sr_config_fini(&cfg);
}

static void
test_missing_file(void)
{
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;

    ASSERT_EQ(sr_config_load(&cfg, "/nonexistent/sniroute.ini", on_error, &got), 1);
    ASSERT_STR_EQ(got.lines[0], "/nonexistent/sniroute.ini: cannot open: No such file or "
                                "directory");
    sr_config_fini(&cfg);
    collected_free(&got);
}

/* sr_config_load_stream: the same messages as from a file, under the name it is given;
 * the stream is read to its end and left open. */
static void
test_stream(void)
{
    static const char text[] = "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\n"
                               "x.com = bad:\n\x01 = a:1\n";
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;
    char buf[sizeof(text)];
    FILE *f;

    memcpy(buf, text, sizeof(text));
    f = fmemopen(buf, sizeof(text) - 1, "r");
    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(&cfg, f, "mem.ini", on_error, &got), 2);
    ASSERT_STR_EQ(got.lines[0], "mem.ini:5: routes 'm': route 'x.com': bad upstream 'bad:': "
                                "missing ':port'");
    ASSERT_STR_EQ(got.lines[1], "mem.ini:6: routes 'm': bad route '?': character not allowed "
                                "in a host name");
    ASSERT_EQ(getc(f), EOF);
    ASSERT_EQ(fclose(f), 0);
    sr_config_fini(&cfg);
    collected_free(&got);
}

static size_t
load_fixture(const char *name, struct sr_config *cfg, struct collected *got)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/%s", SR_CONFIG_DIR, name);
    return sr_config_load(cfg, path, on_error, got);
}

static uint32_t
lookup_upstream(const struct sr_config *cfg, size_t routes, const char *name,
                enum sr_route_kind kind)
{
    struct sr_route_hit hit;

    ASSERT_EQ(sr_route_lookup(cfg->routes[routes].table, name, strlen(name), &hit), kind);
    ASSERT_LT(hit.value, cfg->n_upstreams);
    return hit.value;
}

static const char *
upstream_text(const struct sr_config *cfg, uint32_t i)
{
    static char buf[SR_ADDR_HOST_MAX + 16];

    sr_addr_format(&cfg->upstreams[i].addr, buf, sizeof(buf));
    return buf;
}

static void
test_fixture_full(void)
{
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;
    const struct sr_listener_config *l;

    ASSERT_EQ(load_fixture("full.ini", &cfg, &got), 0);
    ASSERT_EQ(cfg.hello_timeout_ms, 3000);
    ASSERT_EQ(cfg.connect_timeout_ms, 250);
    ASSERT_EQ(cfg.idle_timeout_ms, 2 * 60 * 60 * 1000);
    ASSERT_EQ(cfg.drain_timeout_ms, 60 * 1000);
    ASSERT_EQ(cfg.max_hello_size, 32 * 1024);
    ASSERT_STR_EQ(cfg.access_log, "/var/log/sniroute/access.log");
    ASSERT_EQ(cfg.kernel_relay, SR_KERNEL_RELAY_AUTO);

    ASSERT_EQ(cfg.n_listeners, 2);
    l = &cfg.listeners[0];
    ASSERT_STR_EQ(l->name, "public");
    ASSERT_EQ(l->n_listen, 2);
    ASSERT_EQ(l->listen[0].kind, SR_ADDR_IPV4);
    ASSERT_EQ(l->listen[1].kind, SR_ADDR_IPV6);
    ASSERT_STR_EQ(l->listen[1].host, "::");
    ASSERT_EQ(l->no_sni, SR_NO_SNI_REJECT);
    ASSERT_STR_EQ(cfg.routes[l->routes].name, "public");
    l = &cfg.listeners[1];
    ASSERT_STR_EQ(l->name, "internal");
    ASSERT_EQ(l->no_sni, SR_NO_SNI_DEFAULT);
    ASSERT_STR_EQ(cfg.routes[l->routes].name, "internal");

    ASSERT_EQ(cfg.n_routes, 2);
    ASSERT_STR_EQ(cfg.routes[0].name, "public");
    ASSERT_STR_EQ(upstream_text(&cfg, lookup_upstream(&cfg, 0, "example.com", SR_ROUTE_EXACT)),
                  "127.0.0.1:9001");
    ASSERT_STR_EQ(upstream_text(&cfg, lookup_upstream(&cfg, 0, "www.example.com", SR_ROUTE_EXACT)),
                  "127.0.0.1:9001");
    ASSERT_STR_EQ(
        upstream_text(&cfg, lookup_upstream(&cfg, 0, "a.b.example.com", SR_ROUTE_WILDCARD)),
        "127.0.0.1:9002");
    ASSERT_STR_EQ(
        upstream_text(&cfg, lookup_upstream(&cfg, 0, "x.api.example.com", SR_ROUTE_WILDCARD)),
        "[::1]:9003");
    ASSERT_STR_EQ(upstream_text(&cfg, lookup_upstream(&cfg, 0, "example.net", SR_ROUTE_DEFAULT)),
                  "backend.internal:443");
    ASSERT_STR_EQ(upstream_text(&cfg, lookup_upstream(&cfg, 1, "git.corp.example", SR_ROUTE_EXACT)),
                  "10.0.0.5:443");
    /* The same upstream text in two sections is stored once. */
    ASSERT_EQ(lookup_upstream(&cfg, 1, "wiki.corp.example", SR_ROUTE_EXACT),
              lookup_upstream(&cfg, 0, "example.com", SR_ROUTE_EXACT));
    ASSERT_EQ(cfg.n_upstreams, 5);
    sr_config_fini(&cfg);
    ASSERT_EQ(got.n, 0);
}

static void
test_fixture_minimal(void)
{
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;

    ASSERT_EQ(load_fixture("minimal.ini", &cfg, &got), 0);
    ASSERT_EQ(cfg.n_listeners, 1);
    ASSERT_EQ(cfg.n_upstreams, 1);
    ASSERT_EQ(lookup_upstream(&cfg, 0, "anything.example", SR_ROUTE_DEFAULT), 0);
    sr_config_fini(&cfg);
}

/* errors.ini holds one of each common mistake; errors.expected lists the lines, with FILE
 * for the fixture's path. */
static void
test_fixture_errors(void)
{
    struct collected got = {{NULL}, 0};
    char path[1024];
    char line[1024];
    struct sr_config cfg;
    size_t n;
    size_t i = 0;
    FILE *f;

    n = load_fixture("errors.ini", &cfg, &got);
    sr_config_fini(&cfg);
    snprintf(path, sizeof(path), "%s/errors.expected", SR_CONFIG_DIR);
    f = fopen(path, "r");
    ASSERT(f != NULL);
    snprintf(path, sizeof(path), "%s/errors.ini", SR_CONFIG_DIR);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ASSERT_LT(i, got.n);
        ASSERT_STR_EQ(got.lines[i], expand(line, path));
        i++;
    }
    fclose(f);
    ASSERT_EQ(i, got.n);
    ASSERT_EQ(n, got.n);
    collected_free(&got);
}

/* <pattern> with every "DIR" replaced by <dir>. */
static const char *
expand_dir(const char *pattern, const char *dir)
{
    static char buf[4096];
    size_t n = 0;

    while (*pattern != '\0') {
        if (strncmp(pattern, "DIR", 3) == 0) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", dir);
            pattern += 3;
        } else {
            buf[n++] = *pattern++;
        }
        ASSERT_LT(n, sizeof(buf) - 1);
    }
    buf[n] = '\0';
    return buf;
}

/* Where position <pos> of <cfg> is: "FILE:LINE", FILE relative to <dir>. */
static const char *
place(const struct sr_config *cfg, unsigned pos, const char *dir)
{
    static char buf[1024];
    size_t len = strlen(dir);
    unsigned line;
    const char *file = sr_config_locate(cfg, pos, &line, NULL);

    ASSERT(file != NULL);
    ASSERT_EQ(strncmp(file, dir, len), 0);
    snprintf(buf, sizeof(buf), "%s:%u", file + len + 1, line);
    return buf;
}

/* The line of exact route <name> (or "default") in section <routes>. */
static unsigned
route_pos(const struct sr_config *cfg, size_t routes, const char *name)
{
    struct sr_route_hit hit;

    ASSERT(sr_route_lookup(cfg->routes[routes].table, name, strlen(name), &hit) != SR_ROUTE_MISS);
    return sr_config_route_line(&cfg->routes[routes].lines, &hit);
}

/* include/main.ini: a plain include, a glob of two files (CRLF endings in one, a BOM and no
 * final newline in the other) and a glob that matches nothing. The routes join the section
 * where the include lines are, and every line is located in its own file. */
static void
test_fixture_include(void)
{
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;
    char dir[1024];

    snprintf(dir, sizeof(dir), "%s/include", SR_CONFIG_DIR);
    ASSERT_EQ(load_fixture("include/main.ini", &cfg, &got), 0);
    ASSERT_EQ(cfg.n_routes, 1);
    ASSERT_EQ(sr_route_count(cfg.routes[0].table), 7);
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "first.example"), dir), "main.ini:7");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "a.example"), dir), "tenants/a.routes:2");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "x.a.example"), dir), "tenants/a.routes:4");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "b.example"), dir), "tenants/b.map:1");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "nothing.example"), dir), "tenants/b.map:2");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "c.example"), dir), "tenants/c.map:1");
    ASSERT_STR_EQ(place(&cfg, route_pos(&cfg, 0, "last.example"), dir), "main.ini:11");
    ASSERT_STR_EQ(place(&cfg, cfg.listeners[1].line, dir), "main.ini:13");
    ASSERT_STR_EQ(upstream_text(&cfg, lookup_upstream(&cfg, 0, "c.example", SR_ROUTE_EXACT)),
                  "127.0.0.1:9004");
    ASSERT_EQ(cfg.n_files, 4);
    ASSERT_EQ(cfg.n_includes, 3);
    ASSERT_EQ(cfg.includes[0].n_files, 1);
    ASSERT(!cfg.includes[0].is_glob);
    ASSERT_EQ(cfg.includes[1].n_files, 2);
    ASSERT(cfg.includes[1].is_glob);
    ASSERT_EQ(cfg.includes[2].n_files, 0);
    ASSERT_STR_EQ(place(&cfg, cfg.includes[2].line, dir), "main.ini:10");
    ASSERT_STR_EQ(expand_dir("DIR/tenants", dir), cfg.includes[1].dir);
    sr_config_fini(&cfg);
}

/* include-errors/: mistakes in an included file and in include lines, each FILE:LINE in the
 * file it is in; include-errors.expected has DIR for the directory. */
static void
test_fixture_include_errors(void)
{
    struct collected got = {{NULL}, 0};
    char path[1024];
    char line[1024];
    struct sr_config cfg;
    size_t n;
    size_t i = 0;
    FILE *f;

    n = load_fixture("include-errors/main.ini", &cfg, &got);
    sr_config_fini(&cfg);
    snprintf(path, sizeof(path), "%s/include-errors.expected", SR_CONFIG_DIR);
    f = fopen(path, "r");
    ASSERT(f != NULL);
    snprintf(path, sizeof(path), "%s/include-errors", SR_CONFIG_DIR);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ASSERT_LT(i, got.n);
        ASSERT_STR_EQ(got.lines[i], expand_dir(line, path));
        i++;
    }
    fclose(f);
    ASSERT_EQ(i, got.n);
    ASSERT_EQ(n, got.n);
    collected_free(&got);
}

/* A stream has no directory to include from; the bounds on files and bytes. */
static void
test_include_limits(void)
{
    struct collected got = {{NULL}, 0};
    const char *dir_env = getenv("TMPDIR");
    static const char text[] = "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\n"
                               "default = b:443\ninclude = x.routes\n";
    char dir[256];
    char path[512];
    char want[1024];
    struct sr_config cfg;
    FILE *f;
    size_t i;

    f = fmemopen((void *)text, sizeof(text) - 1, "r");
    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(&cfg, f, "mem.ini", on_error, &got), 1);
    ASSERT_STR_EQ(got.lines[0],
                  "mem.ini:6: routes 'm': include: not available for a config read from a stream");
    fclose(f);
    sr_config_fini(&cfg);
    collected_free(&got);

    snprintf(dir, sizeof(dir), "%s/sniroute-test-include-XXXXXX",
             dir_env != NULL && dir_env[0] != '\0' ? dir_env : "/tmp");
    ASSERT(mkdtemp(dir) != NULL);
    for (i = 0; i <= SR_CONFIG_INCLUDE_FILES_MAX; i++) {
        char route[64];
        int len = snprintf(route, sizeof(route), "h%04zu.example = b:443\n", i);

        snprintf(path, sizeof(path), "%s/%04zu.routes", dir, i);
        write_file(path, route, (size_t)len);
    }
    /* Sparse: past the byte bound without writing it. */
    snprintf(path, sizeof(path), "%s/big.map", dir);
    write_file(path, "", 0);
    ASSERT_EQ(truncate(path, (off_t)SR_CONFIG_INCLUDE_BYTES_MAX + 1), 0);
    snprintf(path, sizeof(path), "%s/main.ini", dir);
    snprintf(want, sizeof(want),
             "[listener a]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\ninclude = big.map\n"
             "include = *.routes\n");
    write_file(path, want, strlen(want));
    ASSERT_EQ(sr_config_load(&cfg, path, on_error, &got), 2);
    snprintf(want, sizeof(want),
             "%s:5: routes 'm': include: '%s/big.map' would make more than %u MiB of included "
             "files",
             path, dir, SR_CONFIG_INCLUDE_BYTES_MAX >> 20);
    ASSERT_STR_EQ(got.lines[0], want);
    snprintf(want, sizeof(want),
             "%s:6: routes 'm': include: more than %u included files (a glob matching too "
             "much?)",
             path, SR_CONFIG_INCLUDE_FILES_MAX);
    ASSERT_STR_EQ(got.lines[1], want);
    ASSERT_EQ(sr_route_count(cfg.routes[0].table), SR_CONFIG_INCLUDE_FILES_MAX);
    sr_config_fini(&cfg);
    collected_free(&got);
    for (i = 0; i <= SR_CONFIG_INCLUDE_FILES_MAX; i++) {
        snprintf(path, sizeof(path), "%s/%04zu.routes", dir, i);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/big.map", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/main.ini", dir);
    unlink(path);
    ASSERT_EQ(rmdir(dir), 0);
}

/* The reader reads ahead 256 KiB at a time (READ_BLOCK in config_reader.c). Put a too-long line,
 * a 199-byte line with a CRLF ending, a NUL byte and a last line ending in '\r' without
 * '\n' across that boundary at many phases (the tricky lines start <shift> bytes before
 * it, and span 539 bytes): the messages and routes must be those of any other position. */
static void
test_block_boundary(void)
{
    static const size_t block = 256 * 1024;
    static const size_t shifts[] = {0,   1,   2,   3,   18,  19,  20,  150, 198, 199, 200, 201,
                                    202, 299, 300, 301, 302, 303, 400, 499, 500, 501, 502, 503,
                                    515, 516, 517, 518, 519, 520, 521, 535, 536, 537, 538, 539};
    static const char head[] =
        "[listener a]\nlisten = 127.0.0.1:1\nroutes = m\n[routes m]\ndefault = b:1\n";
    size_t cap = block + 1024;
    char *text = malloc(cap);
    char want[3][128];
    const char *errors[4];
    size_t k;

    ASSERT(text != NULL);
    for (k = 0; k < sizeof(shifts) / sizeof(shifts[0]); k++) {
        size_t start = block - shifts[k]; /* where the tricky lines begin */
        size_t len = sizeof(head) - 1;
        unsigned line = 5;
        unsigned line_long;
        unsigned line_crlf;
        unsigned line_nul;
        struct sr_config cfg;
        struct sr_route_hit hit;

        memcpy(text, head, len);
        while (len < start) { /* comment lines, 100 bytes or whatever is left (>= 2) */
            size_t n = start - len >= 102 ? 100 : start - len;

            memset(text + len, 'x', n);
            text[len] = ';';
            text[len + n - 1] = '\n';
            len += n;
            line++;
        }
        ASSERT_EQ(len, start);
        line_long = ++line;
        memset(text + len, ' ', 300);
        memcpy(text + len, "long.example = c:1", 18);
        len += 300;
        text[len++] = '\n';
        line_crlf = ++line; /* 199 bytes: too long if the '\r' were counted */
        memset(text + len, ' ', 199);
        memcpy(text + len, "crlf.example = d:1", 18);
        len += 199;
        text[len++] = '\r';
        text[len++] = '\n';
        line_nul = ++line;
        len += (size_t)sprintf(text + len, "nul.example = e:1");
        text[len - 3] = '\0';
        text[len++] = '\n';
        ++line;
        len += (size_t)sprintf(text + len, "crlf.example = f:1\r");
        ASSERT_LT(len, cap);

        snprintf(want[0], sizeof(want[0]), "FILE:%u: line too long (max 199 bytes)", line_long);
        snprintf(want[1], sizeof(want[1]), "FILE:%u: NUL byte in line", line_nul);
        snprintf(want[2], sizeof(want[2]),
                 "FILE:%u: routes 'm': duplicate route 'crlf.example' (first at FILE:%u)", line,
                 line_crlf);
        errors[0] = want[0];
        errors[1] = want[1];
        errors[2] = want[2];
        errors[3] = NULL;
        check_text("block boundary", text, len, errors, &cfg);
        ASSERT_EQ(sr_route_count(cfg.routes[0].table), 2); /* default, crlf.example */
        ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, "crlf.example", 12, &hit), SR_ROUTE_EXACT);
        sr_config_fini(&cfg);
    }
    free(text);
}

/* 10,000 routes over 10 upstreams: everything is found, with its line; upstreams are
 * shared. */
static void
test_many_routes(void)
{
    struct collected got = {{NULL}, 0};
    struct sr_config cfg;
    char name[64];
    FILE *f = fopen(tmp_path, "w");
    struct sr_route_hit hit;
    unsigned i;

    ASSERT(f != NULL);
    fprintf(f, "[listener a]\nlisten = 127.0.0.1:1\nroutes = big\n[routes big]\n");
    for (i = 0; i < 10000; i++) {
        fprintf(f, "%shost-%u.example.com = backend-%u.internal:%u\n", (i % 3) ? "" : "*.", i,
                i % 10, 8000 + i % 10);
    }
    ASSERT_EQ(fclose(f), 0);
    ASSERT_EQ(sr_config_load(&cfg, tmp_path, on_error, &got), 0);
    ASSERT_EQ(sr_route_count(cfg.routes[0].table), 10000);
    ASSERT_EQ(cfg.n_upstreams, 10);
    for (i = 0; i < 10000; i++) {
        uint32_t u;

        snprintf(name, sizeof(name), "%shost-%u.example.com", (i % 3) ? "" : "www.", i);
        u = lookup_upstream(&cfg, 0, name, (i % 3) ? SR_ROUTE_EXACT : SR_ROUTE_WILDCARD);
        ASSERT_EQ(cfg.upstreams[u].addr.port, 8000 + i % 10);
        ASSERT_EQ(sr_route_lookup(cfg.routes[0].table, name, strlen(name), &hit),
                  (i % 3) ? SR_ROUTE_EXACT : SR_ROUTE_WILDCARD);
        ASSERT_EQ(sr_config_route_line(&cfg.routes[0].lines, &hit), 5 + i);
    }
    sr_config_fini(&cfg);
}

int
main(void)
{
    make_tmp_path();
    test_cases();
    test_line_length();
    test_block_boundary();
    test_defaults_and_fields();
    test_limits();
    test_rate_limit();
    test_pools();
    test_alpn_routes();
    test_missing_file();
    test_stream();
    test_fixture_full();
    test_fixture_minimal();
    test_fixture_errors();
    test_fixture_include();
    test_fixture_include_errors();
    test_include_limits();
    test_many_routes();
    unlink(tmp_path);
    return 0;
}
