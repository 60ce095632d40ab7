# SPDX-License-Identifier: MIT
"""Pieces for the end-to-end suite: a throwaway CA, processes we own, TLS and plain-TCP
backends, real ClientHellos, raw-socket helpers and an access-log reader.

Python 3 standard library only. Everything listens on loopback with a port chosen by the
OS; every wait has a timeout; every process is ours and is stopped by PID."""

import hashlib
import os
import queue
import random
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback

ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")


class Fail(Exception):
    """A failed assertion: the message says what was expected and what was seen."""


class Skip(Exception):
    """The case cannot run on this machine; the message says why."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def short(data, n=80):
    """A printable preview of bytes for failure messages."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) <= n:
        return repr(data)
    return repr(data[:n]) + "...(%d bytes)" % len(data)


# ---------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    """In the child before exec: get SIGKILL if the suite itself dies (killed by a CI
    timeout, say), so no s_server or daemon outlives it."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Proc:
    """A child process with stdout and stderr read line by line into lists by two threads,
    so a full pipe never blocks it. stop() ends it by PID: SIGTERM, wait, SIGKILL."""

    registry = []

    def __init__(self, argv, name, env=None, cwd=None, preexec=None, pass_fds=()):
        """<preexec>, if given, runs in the child before exec, after the parent-death
        signal is set (to lower a resource limit, say). <pass_fds> stay open in the child."""
        self.name = name
        self.argv = argv
        self.lines = {"stdout": [], "stderr": []}
        self.cond = threading.Condition()

        def child():
            _die_with_parent()
            if preexec is not None:
                preexec()

        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=cwd,
                                  preexec_fn=child, pass_fds=pass_fds)
        Proc.registry.append(self)
        self.threads = []
        for stream in ("stdout", "stderr"):
            t = threading.Thread(target=self._reader, args=(stream,), daemon=True)
            t.start()
            self.threads.append(t)

    def _reader(self, stream):
        f = getattr(self.p, stream)
        for raw in iter(f.readline, b""):
            with self.cond:
                self.lines[stream].append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def text(self, stream):
        with self.cond:
            return "\n".join(self.lines[stream])

    def wait_line(self, stream, pattern, timeout, start=0):
        """Wait for a line of <stream> at index >= <start> matching <pattern>; returns
        (index, match). Raises Fail on timeout or when the process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                lines = self.lines[stream]
                while i < len(lines):
                    m = rx.search(lines[i])
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.p.poll() is not None and not any(t.is_alive() for t in self.threads):
                    raise Fail("%s exited (status %s) before printing /%s/ on %s; stderr: %s"
                               % (self.name, self.p.returncode, pattern, stream,
                                  self.tail("stderr")))
                self.cond.wait(min(left, 0.1))
        raise Fail("%s: no line /%s/ on %s within %.1fs; stderr: %s"
                   % (self.name, pattern, stream, timeout, self.tail("stderr")))

    def tail(self, stream, n=8):
        with self.cond:
            return " | ".join(self.lines[stream][-n:]) or "(empty)"

    def wait_exit(self, timeout):
        """Wait for the exit and then for its last lines: the reader threads may not have
        taken them from the pipes yet when the process is reaped (a child of its may hold
        a pipe open, so the wait for them is bounded)."""
        try:
            status = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self.threads:
            t.join(timeout=2)
        return status

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """End the process by PID; returns its exit status."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                self.p.kill()
                self.p.wait(timeout=10)
        for t in self.threads:
            t.join(timeout=5)
        return self.p.returncode

    @classmethod
    def stop_all(cls):
        for proc in reversed(cls.registry):
            try:
                proc.stop(timeout=5)
            except Exception:
                pass
        cls.registry.clear()


def run(argv, timeout=20, input=None):
    """Run a short-lived command; returns CompletedProcess with text output."""
    try:
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise Fail("%s did not finish within %ss" % (" ".join(argv[:3]), timeout)) from e


def txt(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


# ---------------------------------------------------------------------------------------
# PKI: a throwaway CA and one leaf per backend


class PKI:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pki")
        os.makedirs(self.dir)
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca = os.path.join(self.dir, "ca.pem")
        self._openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                       "-subj", "/CN=sniroute-e2e-ca",
                       "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.serial = 1000

    def _openssl(self, args):
        r = run(["openssl"] + args, timeout=30)
        if r.returncode != 0:
            raise Fail("openssl %s failed: %s" % (args[0], txt(r.stderr)))

    def leaf(self, cn, sans):
        """Issue a leaf for <cn> with subjectAltName <sans> (e.g. ["DNS:a", "IP:127.0.0.1"]).
        Returns (cert_path, key_path)."""
        base = os.path.join(self.dir, cn)
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n"
                    "subjectAltName=%s\n" % ",".join(sans))
        self._openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
                       "-subj", "/CN=" + cn])
        self.serial += 1
        self._openssl(["x509", "-req", "-in", base + ".csr", "-CA", self.ca, "-CAkey",
                       self.ca_key, "-set_serial", str(self.serial), "-days", "2",
                       "-extfile", ext, "-out", base + ".pem"])
        return base + ".pem", base + ".key"


# ---------------------------------------------------------------------------------------
# Backends


class SServer:
    """openssl s_server -www on 127.0.0.1, port chosen by the OS."""

    def __init__(self, cert, key, name):
        self.proc = Proc(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert,
                          "-key", key, "-www"], "s_server " + name)
        _, m = self.proc.wait_line("stdout", r"^ACCEPT .*:(\d+)$", 15)
        self.port = int(m.group(1))

    def stop(self):
        self.proc.stop()


class _Acceptor:
    """A listening socket on 127.0.0.1:0 and a thread that hands each connection to
    handle(conn) in its own thread."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.results = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(None)
            threading.Thread(target=self._guard, args=(conn,), daemon=True).start()

    def _guard(self, conn):
        try:
            self.handle(conn)
        except Exception as e:  # reported to the test through results
            self.results.put(("error", repr(e)))
        finally:
            conn.close()

    def next_result(self, timeout, what):
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            raise Fail("%s: backend saw no finished connection within %ss" % (what, timeout))

    def drain_results(self):
        while True:
            try:
                self.results.get_nowait()
            except queue.Empty:
                return

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def reply_for(data):
    """The capture backend's reply: a header naming the digest of what it received, then
    256 KiB of deterministic bytes, so the client sees a reply much larger than a segment."""
    return (b"GOT %d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode())
            + random.Random(len(data)).randbytes(256 * 1024))


class CaptureBackend(_Acceptor):
    """Plain TCP: reads to EOF (bounded), then sends reply_for(data) and closes. Each
    connection's (data, reply) goes into results."""

    def handle(self, conn):
        conn.settimeout(20)
        data = recv_all(conn, deadline=time.monotonic() + 20)
        reply = reply_for(data)
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)
        self.results.put(("ok", data, reply))


class EchoBackend(_Acceptor):
    """Plain TCP: echoes everything until EOF, then closes."""

    def handle(self, conn):
        conn.settimeout(120)
        total = 0
        while True:
            try:
                b = conn.recv(65536)
            except OSError as e:
                self.results.put(("reset", total, repr(e)))
                return
            if not b:
                break
            total += len(b)
            conn.sendall(b)
        conn.shutdown(socket.SHUT_WR)
        self.results.put(("ok", total))


class HoldBackend(_Acceptor):
    """Plain TCP: accepts and holds the connection open, reading and discarding until EOF
    or 60 s; used where a backend must stay silent."""

    def handle(self, conn):
        conn.settimeout(60)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        self.results.put(("ok",))


class ResetBackend(_Acceptor):
    """Plain TCP: reads the first bytes (the hello), then closes with a reset."""

    def handle(self, conn):
        conn.settimeout(10)
        data = conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.results.put(("ok", data))


class StallBackend(_Acceptor):
    """Plain TCP with a small receive buffer: accepts and never reads, until release()."""

    def __init__(self):
        self.released = threading.Event()
        super().__init__()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)

    def handle(self, conn):
        self.results.put(("accepted",))
        self.released.wait(60)
        self.results.put(("ok",))

    def release(self):
        self.released.set()


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def free_port():
    """A loopback TCP port free just now (bound, read and released: the caller binds it
    next, so another process could in principle take it in between)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dead_port():
    """A loopback port that refuses connections: bound but not listening, so no one else
    can take it while we hold the socket. Returns (socket, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# Bulk TLS: both ends drive an ssl.SSLObject over a plain socket in one thread each, so
# reads and writes interleave without sharing an SSL object between threads.


def stream_chunks(seed, total, chunk=128 * 1024):
    """Deterministic bytes: <total> of them in chunks, each chunk tagged with its index so
    a reordered or repeated chunk changes the digest."""
    base = random.Random(seed).randbytes((1 << 20) + chunk)
    i = 0
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        off = (i * 40503) % (1 << 20)
        block = (struct.pack(">Q", i) + base[off + 8:off + chunk])[:n]
        yield block
        sent += n
        i += 1


def stream_digest(seed, total):
    h = hashlib.sha256()
    for c in stream_chunks(seed, total):
        h.update(c)
    return h.hexdigest()


class TLSPump:
    """Handshake, then send <total_out> deterministic bytes from <seed> while receiving
    until EOF, then shut down our write side; all in one loop over select()."""

    def __init__(self, sock, sslobj, seed, total_out, timeout):
        self.sock = sock
        self.obj = sslobj
        self.chunks = stream_chunks(seed, total_out)
        self.deadline = time.monotonic() + timeout
        self.sent_hash = hashlib.sha256()
        self.recv_hash = hashlib.sha256()
        self.sent = 0
        self.received = 0
        self.error = None
        self.peer_cn = None
        sock.setblocking(False)

    def _flush(self, out):
        while out:
            try:
                n = self.sock.send(out)
            except BlockingIOError:
                return out
            out = out[n:]
        return out

    def _drain(self, eof):
        while True:
            try:
                plain = self.obj.read(262144)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return
            except ssl.SSLError as e:
                if eof:
                    return
                raise Fail("bulk: TLS error after %d bytes: %s" % (self.received, e))
            if not plain:
                return
            self.received += len(plain)
            self.recv_hash.update(plain)

    def run(self):
        outgoing = b""
        pending = b""
        handshaken = False
        done_writing = False
        eof = False
        shut = False
        while True:
            if time.monotonic() > self.deadline:
                raise Fail("bulk: timed out (sent %d, received %d)" % (self.sent, self.received))
            if not handshaken:
                try:
                    self.obj.do_handshake()
                    handshaken = True
                    cert = self.obj.getpeercert()
                    if cert:
                        self.peer_cn = dict(x[0] for x in cert["subject"]).get("commonName")
                except ssl.SSLWantReadError:
                    pass
            if handshaken:
                self._drain(eof)
            if handshaken and not done_writing:
                # At most ~1 MiB of ciphertext queued in user space: our own backpressure.
                while len(outgoing) < (1 << 20):
                    if not pending:
                        pending = next(self.chunks, None)
                        if pending is None:
                            done_writing = True
                            pending = b""
                            break
                        self.sent_hash.update(pending)
                    n = self.obj.write(pending)
                    self.sent += n
                    pending = pending[n:]
                    outgoing += self._outgoing.read()
            outgoing += self._outgoing.read()
            if shut:
                # After our FIN, OpenSSL may still queue an alert (for the peer's EOF
                # without close_notify); there is nowhere to send it.
                outgoing = b""
            outgoing = self._flush(outgoing)
            if done_writing and not outgoing and not shut:
                self.sock.shutdown(socket.SHUT_WR)
                shut = True
            if eof and shut:
                return
            rl = [self.sock] if not eof else []
            wl = [self.sock] if outgoing else []
            if not rl and not wl:
                continue
            r, _, _ = select.select(rl, wl, [], 0.5)
            if not r:
                continue
            try:
                data = self.sock.recv(262144)
            except ConnectionResetError as e:
                raise Fail("bulk: connection reset after receiving %d bytes (%s)"
                           % (self.received, e))
            if not data:
                # Not passed on to OpenSSL: after an EOF without close_notify it
                # refuses to write, and the peer may legitimately finish first.
                eof = True
                if not handshaken:
                    raise Fail("bulk: EOF during the handshake")
            else:
                self._incoming.write(data)
            if handshaken:
                self._drain(eof)


def tls_pump(sock, ctx, server_side, hostname, seed, total_out, timeout):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=server_side,
                       server_hostname=None if server_side else hostname)
    p = TLSPump(sock, obj, seed, total_out, timeout)
    p._incoming, p._outgoing = inc, out
    p.run()
    return p


class BulkBackend(_Acceptor):
    """TLS with its own certificate: per connection, receive until EOF while sending
    <total> deterministic bytes; results get (received, recv_digest, sent, sent_digest)."""

    def __init__(self, cert, key, total, seed):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.total = total
        self.seed = seed
        super().__init__()

    def handle(self, conn):
        p = tls_pump(conn, self.ctx, True, None, self.seed, self.total, 60)
        self.results.put(("ok", p.received, p.recv_hash.hexdigest(), p.sent,
                          p.sent_hash.hexdigest()))


# ---------------------------------------------------------------------------------------
# ClientHellos and raw sockets


def client_hello(sni, alpn=None, min_version=None):
    """A real ClientHello record from OpenSSL (through Python's ssl, memory BIOs: no
    network). <sni> None or an IP literal sends no server_name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if min_version:
        ctx.minimum_version = min_version
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[0] == 0x16 and len(hello) == 5 + struct.unpack(">H", hello[3:5])[0]
    return hello


def inflate_hello(record, pad):
    """The ClientHello in <record> with an extra extension of <pad> zero bytes (type
    0x1a1a, a GREASE value that every parser must skip) placed first, so the hello stays
    well-formed but its server_name comes only after <pad> bytes. Returned as one
    handshake message in records of at most 16384 bytes."""
    hs = record[5:]
    body = hs[4:]
    p = 34
    p += 1 + body[p]
    p += 2 + struct.unpack(">H", body[p:p + 2])[0]
    p += 1 + body[p]
    exts = body[p + 2:]
    exts = struct.pack(">HH", 0x1A1A, pad) + bytes(pad) + exts
    body = body[:p] + struct.pack(">H", len(exts)) + exts
    msg = b"\x01" + struct.pack(">I", len(body))[1:] + body
    out = b""
    for i in range(0, len(msg), 16384):
        part = msg[i:i + 16384]
        out += record[:3] + struct.pack(">H", len(part)) + part
    return out


def reframe(record, cuts):
    """Split one handshake record's body at offsets <cuts> into several records with the
    same header type and version."""
    body = record[5:]
    out = b""
    prev = 0
    for c in list(cuts) + [len(body)]:
        part = body[prev:c]
        out += record[:3] + struct.pack(">H", len(part)) + part
        prev = c
    return out


def connect(port, host="127.0.0.1", timeout=10, nodelay=True):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(s, deadline, limit=1 << 30):
    """Read until EOF; raises Fail on timeout and lets ConnectionResetError through."""
    chunks = []
    n = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("no EOF within the time allowed (got %d bytes: %s)"
                       % (n, short(b"".join(chunks))))
        s.settimeout(left)
        try:
            b = s.recv(262144)
        except socket.timeout:
            continue
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        n += len(b)
        if n > limit:
            raise Fail("more than %d bytes received" % limit)


def wait_close(s, timeout):
    """Wait for the peer to close <s>. Returns ("eof", data) or ("reset", data); raises
    Fail if neither happens within <timeout>."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("connection still open after %.1fs (received %s)" % (timeout, short(data)))
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset", data
        if not b:
            return "eof", data
        data += b


def conn_refused(port, host="127.0.0.1"):
    try:
        s = connect(port, host, timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


# ---------------------------------------------------------------------------------------
# Access log


LOG_KV_RX = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    """"TIMESTAMP k=v k="quoted v" ..." into a dict; unknown keys are kept, quotes are
    removed from quoted values. The timestamp lands in "_ts", the raw line in "_raw"."""
    d = {"_raw": line}
    first = line.split(" ", 1)[0]
    if first and "=" not in first:
        d["_ts"] = first
    for m in LOG_KV_RX.finditer(line):
        v = m.group(2)
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        d[m.group(1)] = v
    return d


TS_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# ---------------------------------------------------------------------------------------
# A sniroute daemon on its own (without run_e2e.py's context object), and what the fault
# and abuse suite measures about it: memory, CPU time, descriptors.


LISTEN_RX = re.compile(r"listening on (\[[^\]]+\]|[0-9.]+):(\d+) \(listener ([^)\s]+)\)")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def sniroute_config(settings, listeners, routes):
    """INI text: <settings> [(key, value)] for [sniroute]; <listeners> [(name, [listen],
    routes, no_sni)]; <routes> [(name, [(key, value)])]."""
    out = ["; written by the sniroute test harness", "[sniroute]"]
    out += ["%s = %s" % kv for kv in settings]
    for name, listens, rname, no_sni in listeners:
        out += ["", "[listener %s]" % name]
        out += ["listen = %s" % a for a in listens]
        out += ["routes = %s" % rname, "no_sni = %s" % no_sni]
    for rname, entries in routes:
        out += ["", "[routes %s]" % rname]
        out += ["%s = %s" % kv for kv in entries]
    return "\n".join(out) + "\n"


def with_kernel_relay(text):
    """<text> with kernel_relay = $SNIROUTE_TEST_KERNEL_RELAY in its [sniroute] section when
    that is set and the config does not choose: runs a suite's daemons on the kernel path
    (test/run.sh's kernel relay pass: SNIROUTE_TEST_KERNEL_RELAY=sockmap ctest -R ...)."""
    mode = os.environ.get("SNIROUTE_TEST_KERNEL_RELAY")
    if not mode or re.search(r"^\s*kernel_relay\s*=", text, re.M):
        return text
    if re.search(r"^\[sniroute\]\s*$", text, re.M):
        return re.sub(r"^\[sniroute\]\s*$", "[sniroute]\nkernel_relay = %s" % mode, text,
                      count=1, flags=re.M)
    return "[sniroute]\nkernel_relay = %s\n\n" % mode + text


class Sniroute:
    """sniroute -c CONFIG in the foreground, config written to <tmp>/<name>.ini; waits for
    <n_sockets> "listening on" lines. The access log is read from stdout. <preexec> runs
    in the child before exec (see nofile_limit)."""

    def __init__(self, binary, tmp, name, config_text, n_sockets=1, preexec=None):
        self.name = name
        self.path = os.path.join(tmp, name + ".ini")
        self.stopped_status = None
        config_text = with_kernel_relay(config_text)
        with open(self.path, "w") as f:
            f.write(config_text)
        self.proc = Proc([binary, "-c", self.path], "sniroute(" + name + ")", preexec=preexec)
        self.addrs = {}
        idx = 0
        for _ in range(n_sockets):
            i, m = self.proc.wait_line("stderr", LISTEN_RX.pattern, 15, idx)
            idx = i + 1
            self.addrs.setdefault(m.group(3), []).append((m.group(1).strip("[]"),
                                                          int(m.group(2))))

    @property
    def pid(self):
        return self.proc.pid

    def port(self, listener="https"):
        for host, port in self.addrs.get(listener, []):
            if ":" not in host:
                return port
        raise Fail("%s: no IPv4 socket for listener %s in %s" % (self.name, listener,
                                                                 self.addrs))

    def alive(self):
        return self.proc.alive()

    def mark(self):
        with self.proc.cond:
            return len(self.proc.lines["stdout"])

    def logs(self, start=0):
        with self.proc.cond:
            lines = list(self.proc.lines["stdout"][start:])
        return [parse_log_line(x) for x in lines if "outcome=" in x]

    def wait_log(self, pred, desc, start=0, timeout=8):
        """The first access-log line after <start> for which pred(entry) holds."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.logs(start):
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                seen = [e["_raw"] for e in self.logs(start)][-6:]
                raise Fail("%s: no access-log line for %s within %ss; lines since: %s"
                           % (self.name, desc, timeout, seen or "(none)"))
            time.sleep(0.05)

    def wait_log_port(self, client_port, desc, start=0, timeout=8):
        return self.wait_log(lambda e: e.get("client", "").endswith(":%d" % client_port),
                             "%s (client port %d)" % (desc, client_port), start, timeout)

    def wait_log_count(self, n, start=0, timeout=20):
        """Wait until at least <n> access-log lines follow <start>; returns them (fewer
        if <timeout> passes first: the caller decides whether that is a failure)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.logs(start)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def rss_kib(self):
        return rss_kib(self.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def n_fds(self):
        return n_fds(self.pid)

    def sanitizer_report(self):
        """The first sanitizer report on stderr (a line and what follows), or None."""
        err = self.proc.text("stderr")
        for pat in SANITIZER_MARKS:
            if pat in err:
                i = err.index(pat)
                return err[i:i + 400]
        return None

    def stop(self):
        if self.stopped_status is None:
            self.stopped_status = self.proc.stop(signal.SIGTERM, timeout=15)
            tally_kernel_relay(self.name, self.proc.text("stderr"))
        return self.stopped_status


STOP_RX = re.compile(r"stopped after (\d+) connection\(s\), (\d+) of them through the kernel relay")


def tally_kernel_relay(name, stderr):
    """Append "<suite> <daemon> <kernel-relayed> <connections>" to the file named by
    $SNIROUTE_TEST_KERNEL_RELAY_TALLY for a daemon that stopped cleanly on the kernel path:
    test/run.sh sums it, so a pass that never reached the kernel path cannot go green."""
    path = os.environ.get("SNIROUTE_TEST_KERNEL_RELAY_TALLY")
    m = STOP_RX.search(stderr)
    if path and m:
        with open(path, "a") as f:
            f.write("%s %s %s %s\n" % (os.path.basename(sys.argv[0]), name.replace(" ", "_"),
                                       m.group(2), m.group(1)))


def cpu_seconds(pid):
    """User plus system CPU time of <pid> so far, in seconds (fields 14 and 15 of
    /proc/PID/stat, counted after the parenthesised command name)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def n_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def fd_kinds(pid):
    """Counts of <pid>'s open descriptors by kind: "socket", "pipe", "anon_inode", "file"."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        kind = target.split(":", 1)[0] if ":[" in target else "file"
        out[kind] = out.get(kind, 0) + 1
    return out


def raise_nofile():
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_limit(n):
    """A preexec for Proc/Sniroute: the child runs with RLIMIT_NOFILE <n> (soft and hard),
    or with the hard limit if <n> is None."""
    def f():
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if n is None else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want if n is not None else hard))
    return f


def binary_has_asan(path):
    """True if <path> was linked with AddressSanitizer (its runtime symbols are in the
    file: clang links the runtime statically). ASan's quarantine keeps freed memory for a
    while, so RSS after churn says little about leaks there."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class BlackHole:
    """A loopback port whose connects neither succeed nor fail: a listener with backlog 0
    that never accepts, its accept queue filled by our own connections, so the kernel
    drops further SYNs (a full accept queue drops, SYN cookies or not) and a connect only
    ever times out. Loopback only, no privileges. Raises Skip if the kernel answers
    anyway."""

    def __init__(self, max_fillers=16):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(max_fillers):
            if self.probe(0.3) == "pending":
                return
        self.close()
        raise Skip("could not fill a backlog-0 accept queue with %d connections; the "
                   "kernel keeps completing handshakes" % max_fillers)

    def probe(self, wait):
        """One more non-blocking connect, kept open: "connected", "refused" or
        "pending" (still no answer after <wait> seconds)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        self.fillers.append(s)
        s.connect_ex(("127.0.0.1", self.port))
        _, w, _ = select.select([], [s], [], wait)
        if not w:
            return "pending"
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return "connected" if err == 0 else "refused"

    def close(self):
        for s in self.fillers:
            s.close()
        self.fillers = []
        self.sock.close()


def peer_closed(s):
    """Without blocking: "eof" or "reset" if the peer has closed <s>, "data" if bytes are
    waiting, None if it is still open and quiet."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return None
    try:
        b = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return "reset"
    return "eof" if b == b"" else "data"


# ---------------------------------------------------------------------------------------
# Running a suite


def run_suite(cases, make_ctx=None, extra_args=None):
    """The common main() of the e2e suites: --sniroute PATH and -k FILTER, a temporary
    directory, each case in turn ("PASS name (s) [note]" / "FAIL name: why"), every process
    stopped after each case, then "N passed, M failed" and the exit status. <make_ctx>
    (binary, tmp, args) builds what the cases receive (default: an object with .binary and
    .tmp); <extra_args>(parser) adds options."""
    import argparse
    import sys
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute", required=True)
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    if extra_args is not None:
        extra_args(ap)
    args = ap.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # a daemon that drops to nobody must still read its config
        binary = os.path.abspath(args.sniroute)
        if make_ctx is not None:
            ctx = make_ctx(binary, tmp, args)
        else:
            ctx = type("Ctx", (), {})()
            ctx.binary, ctx.tmp = binary, tmp
        for case in cases:
            name = case.__name__[len("case_"):] if case.__name__.startswith("case_") \
                else case.__name__
            if args.k not in name:
                continue
            t0 = time.monotonic()
            try:
                note = case(ctx)
                print("PASS %s (%.1fs)%s" % (name, time.monotonic() - t0,
                                             " [%s]" % note if note else ""))
                passed += 1
            except Fail as e:
                print("FAIL %s: %s" % (name, e))
                failed += 1
            except Exception as e:  # a reset or timeout the case did not expect: a failure
                tb = traceback.extract_tb(e.__traceback__)[-1]
                print("FAIL %s: %s: %s (at %s:%d)" % (name, type(e).__name__, e,
                                                     os.path.basename(tb.filename), tb.lineno))
                failed += 1
            finally:
                Proc.stop_all()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
