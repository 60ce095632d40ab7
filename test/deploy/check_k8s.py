#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Kubernetes manifests in etc/k8s/, checked without a cluster.

For every file: it parses as YAML, each document has a known apiVersion and kind, and
selectors match the pod labels. For every sniroute container: its config comes from a
ConfigMap in the same file, mounted as a directory (a subPath mount never updates, which
would defeat `watch = yes`), that config passes `sniroute -t`, the liveness and readiness
probes are GET /healthz and /readyz on the admin port of that config, the admin address is
not loopback (kubelet probes the pod IP), every listen port is a declared containerPort,
the grace period is above drain_timeout, and the container runs non-root on a read-only
root with every capability dropped. Every `include =` of the config names a directory where
a ConfigMap of the same file is mounted (as a directory) and matches at least one of its
keys; every ConfigMap stays under 1 MiB (the API server's limit, about 30,000 routes);
`sniroute -t` runs with the ConfigMaps laid out as mounted (absolute include paths moved
under a temporary directory). deployment.yaml: 2 replicas, a LoadBalancer Service
with externalTrafficPolicy Local whose targetPort is a listener, a PodDisruptionBudget.
sidecar.yaml: every upstream is a loopback port declared by another container of the pod.

Usage: check_k8s.py --source-dir DIR --sniroute PATH
"""
import argparse
import fnmatch
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("check_k8s: PyYAML is missing for %s (Debian: apt-get install python3-yaml)"
             % sys.executable)

KNOWN = {
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
}
DEFAULT_DRAIN_S = 30
# A ConfigMap's data, in all: the API server refuses more (etcd's object limit).
CONFIGMAP_MAX_BYTES = 1 << 20


class Problems(list):
    def check(self, cond, where, msg):
        if not cond:
            self.append("%s: %s" % (where, msg))
        return cond


def parse_ini(text):
    """{section: [(key, value)]} the way sniroute reads it: ; and # comments."""
    sections = {}
    cur = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]").strip(), [])
            continue
        key, _, value = line.partition("=")
        value = re.split(r"\s;", value, maxsplit=1)[0]
        if cur is not None:
            cur.append((key.strip(), value.strip()))
    return sections


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def split_addr(text):
    m = re.fullmatch(r"\[?([^\]]*)\]?:(\d+)", text)
    return m.group(1), int(m.group(2))


def includes(ini, cfg_dir):
    """[(routes section, absolute include path)] of a parsed config."""
    out = []
    for sec, items in ini.items():
        for key, value in items:
            if sec.startswith("routes ") and key == "include":
                out.append((sec, os.path.normpath(os.path.join(cfg_dir, value))))
    return out


def sniroute_check(sniroute, cfg_path, text, mounted):
    """`sniroute -t` on <text> as if at <cfg_path>, with <mounted> ({mount path: {key:
    text}}) written under a temporary root and absolute include paths moved there."""
    with tempfile.TemporaryDirectory() as tmp:
        for mount, files in mounted.items():
            d = tmp + mount
            os.makedirs(d, exist_ok=True)
            for key, body in files.items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(body)
        text = re.sub(r"(?m)^(\s*include\s*=\s*)/", lambda m: m.group(1) + tmp + "/", text)
        path = tmp + cfg_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.run([sniroute, "-t", "-c", path], capture_output=True, text=True)
        return proc.returncode, proc.stderr


def resolve_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod(where, pod_meta, pod_spec, configmaps, sniroute, problems, is_sidecar):
    """Checks one pod template; returns the parsed sniroute config (or None)."""
    labels = pod_meta.get("labels", {})
    pod_sc = pod_spec.get("securityContext", {})
    containers = pod_spec.get("containers", [])
    sr = [c for c in containers if "sniroute" in c.get("image", "")]
    if not problems.check(len(sr) == 1, where, "want exactly one sniroute container"):
        return None
    c = sr[0]
    cw = "%s: container %s" % (where, c["name"])
    args = c.get("args", [])
    cfg_path = args[args.index("-c") + 1] if "-c" in args else "/etc/sniroute/sniroute.ini"
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    mount = mounts.get(os.path.dirname(cfg_path))
    if not problems.check(mount is not None, cw, "no volume mounted at %s" % os.path.dirname(cfg_path)):
        return None
    problems.check("subPath" not in mount, cw, "config mounted with subPath: never updated")
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    cm_name = vols.get(mount["name"], {}).get("configMap", {}).get("name")
    cm = configmaps.get(cm_name)
    if not problems.check(cm is not None, cw, "config volume is not a ConfigMap of this file"):
        return None
    text = cm.get("data", {}).get(os.path.basename(cfg_path))
    if not problems.check(text is not None, cw, "ConfigMap %s has no %s" % (cm_name, cfg_path)):
        return None
    mounted = {}
    for path, m in mounts.items():
        other = configmaps.get(vols.get(m["name"], {}).get("configMap", {}).get("name"))
        if other is not None and "subPath" not in m:
            mounted[path] = other.get("data", {})
    ini = parse_ini(text)
    # Includes: each names a mounted ConfigMap's directory and matches one of its keys.
    for sec, inc in includes(ini, os.path.dirname(cfg_path)):
        d, pattern = os.path.split(inc)
        if problems.check(d in mounted, cw, "[%s] include = %s: no ConfigMap is mounted at %s"
                          % (sec, inc, d)):
            problems.check(any(fnmatch.fnmatch(k, pattern) for k in mounted[d]), cw,
                           "[%s] include = %s matches no key of the ConfigMap mounted there"
                           % (sec, inc))
    rc, err = sniroute_check(sniroute, cfg_path, text, mounted)
    problems.check(rc == 0, cw, "embedded %s: sniroute -t failed:\n%s" % (cfg_path, err))
    top = dict(ini.get("sniroute", []))

    # Probes on the admin endpoint of that config.
    if problems.check("admin" in top, cw, "config has no admin address for the probes"):
        host, admin_port = split_addr(top["admin"])
        problems.check(not host.startswith("127.") and host != "::1", cw,
                       "admin = %s is loopback: kubelet probes the pod IP" % top["admin"])
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            problems.check(get.get("path") == path, cw, "%s path is %r, want %s"
                           % (probe, get.get("path"), path))
            problems.check(resolve_port(c, get.get("port")) == admin_port, cw,
                           "%s port %r is not the admin port %d" % (probe, get.get("port"), admin_port))
    declared = {p["containerPort"] for p in c.get("ports", [])}
    for sec, items in ini.items():
        for key, value in items:
            if sec.startswith("listener ") and key == "listen":
                problems.check(split_addr(value)[1] in declared, cw,
                               "listen %s: port not declared in ports" % value)
    problems.check(top.get("watch") == "yes", cw, "watch = yes is needed for ConfigMap reloads")

    drain = duration_s(top["drain_timeout"]) if "drain_timeout" in top else DEFAULT_DRAIN_S
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    problems.check(grace > drain, where, "terminationGracePeriodSeconds %s is not above "
                   "drain_timeout %ss" % (grace, drain))

    sc = c.get("securityContext", {})
    problems.check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, cw, "runAsNonRoot")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    problems.check(isinstance(uid, int) and uid > 0, cw, "a numeric non-root runAsUser")
    problems.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem")
    problems.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation")
    problems.check(sc.get("capabilities", {}).get("drop") == ["ALL"], cw, "drop ALL capabilities")

    if is_sidecar:
        others = {p["containerPort"] for o in containers if o is not c for p in o.get("ports", [])}
        n = 0
        for sec, items in ini.items():
            if not sec.startswith("routes "):
                continue
            for key, value in items:
                host, port = split_addr(value)
                n += 1
                problems.check(host == "127.0.0.1" and port in others, cw,
                               "route %s = %s is not a loopback port of another container"
                               % (key, value))
        problems.check(n > 0, cw, "no routes")
    return ini


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    problems = Problems()

    for name in ("deployment.yaml", "sidecar.yaml"):
        where = "etc/k8s/" + name
        with open(os.path.join(args.source_dir, where)) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        by_kind = {}
        for d in docs:
            key = (d.get("apiVersion"), d.get("kind"))
            problems.check(key in KNOWN, where, "unexpected apiVersion/kind %s" % (key,))
            problems.check(bool(d.get("metadata", {}).get("name")), where, "%s without a name" % (key,))
            by_kind.setdefault(d.get("kind"), []).append(d)
        configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
        for cm_name, cm in configmaps.items():
            size = sum(len(k.encode()) + len(v.encode()) for k, v in cm.get("data", {}).items())
            problems.check(size < CONFIGMAP_MAX_BYTES, where, "ConfigMap %s holds %d bytes: "
                           "over 1 MiB, the API server refuses it (split the routes)"
                           % (cm_name, size))

        if name == "deployment.yaml":
            deps = by_kind.get("Deployment", [])
            if not problems.check(len(deps) == 1, where, "want one Deployment"):
                continue
            dep = deps[0]
            spec = dep["spec"]
            tmpl = spec["template"]
            labels = tmpl["metadata"].get("labels", {})
            problems.check(spec.get("replicas") == 2, where, "want 2 replicas")
            problems.check(labels_match(spec["selector"].get("matchLabels"), labels), where,
                           "Deployment selector does not match its pod labels")
            ini = check_pod(where + ": Deployment", tmpl["metadata"], tmpl["spec"], configmaps,
                            args.sniroute, problems, is_sidecar=False)
            container = [c for c in tmpl["spec"]["containers"] if "sniroute" in c["image"]][0]
            svcs = by_kind.get("Service", [])
            if problems.check(len(svcs) == 1, where, "want one Service"):
                svc = svcs[0]["spec"]
                problems.check(svc.get("type") == "LoadBalancer", where, "Service type")
                problems.check(svc.get("externalTrafficPolicy") == "Local", where,
                               "externalTrafficPolicy Local keeps client addresses")
                problems.check(labels_match(svc.get("selector"), labels), where,
                               "Service selector does not match the pods")
                listen_ports = {split_addr(v)[1] for s, items in (ini or {}).items()
                                if s.startswith("listener ") for k, v in items if k == "listen"}
                for p in svc.get("ports", []):
                    target = resolve_port(container, p.get("targetPort", p.get("port")))
                    problems.check(target in listen_ports, where, "Service port %s -> %s is "
                                   "not a sniroute listener" % (p.get("port"), target))
            pdbs = by_kind.get("PodDisruptionBudget", [])
            if problems.check(len(pdbs) == 1, where, "want one PodDisruptionBudget"):
                pdb = pdbs[0]["spec"]
                problems.check(pdb.get("minAvailable") == 1, where, "PDB minAvailable 1")
                problems.check(labels_match(pdb["selector"].get("matchLabels"), labels), where,
                               "PDB selector does not match the pods")
        else:
            pods = by_kind.get("Pod", [])
            if problems.check(len(pods) == 1, where, "want one Pod"):
                check_pod(where + ": Pod", pods[0]["metadata"], pods[0]["spec"], configmaps,
                          args.sniroute, problems, is_sidecar=True)

    for p in problems:
        print(p)
    print("k8s manifests: %d problem(s)" % len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
