#!/usr/bin/env python3
"""Security-hardening figures for one imgrelay binary: eleven attacks, all on 127.0.0.1.

Run:   benches/attacks.py BINARY [--label NAME]
e.g.   benches/attacks.py target/release/imgrelay --label NEW

What it measures (each attack prints `attack | figure`, then a markdown table follows):
  1. signing oracle: POST a wrapped <img> to /_imgrelay/rewrite on the PUBLIC port (status, does the
     reply hold a signed /img/ URL?) and GET /_imgrelay/metrics there (status)
  2. an idle TCP connection that never sends a byte: seconds until the server closes it
  3. an idle HTTP/1.1 keep-alive connection after one healthz: seconds until closed
  4. slow reader: a 50 MiB page through the page proxy, nothing read: seconds until the server drops
     the connection (seen in /proc/net/tcp, then confirmed by reading) and bytes the client got
  5. trickled body: POST /echo through the page proxy, Content-Length 1000, 1 byte every 2 s:
     seconds until the server answers or closes, and the status
  6. 300 idle sockets against a server started under `ulimit -n 256`: seconds a fresh healthz
     takes, and the "accept failed" lines on the server's stderr
  7. abandoned requests: 10 clients ask for one new variant (origin delays it 1 s) and hang up after
     0.1 s; 3 s later: origin requests so far, and X-Cache of a following request
  8. HTTP/1.1 without Host, and TRACE, to the page proxy: status, and did the origin get it?
  9. an image-route 403 (one signature character changed): does it carry the CSP sandbox?
 10. SSRF: a signed http://[::ffff:0:7f00:1]:PORT/ URL (IPv4-translated IPv6 for 127.0.0.1): status
     and whether the origin saw it. This one runs in a private network namespace (`unshare -n`,
     only its own loopback) so a binary that does connect cannot send a packet off the host;
     without unshare it is skipped.
 11. key files: `sign` with the key at mode 0666 (exit code, stderr) and 0644 (warning?); `serve`
     from another directory with a config-relative key_file: did it create a key in the cwd?

Everything is local: the script starts the binary itself (temp dir, own config, a 0600 key file,
free ports, `admin_listen` only when `check-config` accepts it) and a Python origin in a thread
(JPEG with optional delay, 50 MiB HTML, /echo). Timeouts are the binary's shipped defaults (none is
shortened; only shutdown_grace_s = 2 so the servers stop quickly); every wait is capped (130 s,
40 s for attack 6). Attacks 2-5 run concurrently on one server to keep the run near three minutes.
Python 3 standard library only. Exits by itself; every child process is stopped on the way out.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "data" / "images" / "photo-640x480.jpg"
IMAGE_HOST = "static.1sapp.com"
CAP_S = 130.0
HEALTHZ_CAP_S = 40.0
BIG_CHUNK = 64 * 1024
BIG_CHUNKS = 800  # 50 MiB
SHUTDOWN_GRACE_S = 2


def log(msg):
    print(f"[attacks] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The origin: JPEG (optional ?delay=S), 50 MiB HTML, /echo POST, TRACE recorded; counts requests.


class Origin:
    def __init__(self):
        self.photo = PHOTO.read_bytes()
        self.lock = threading.Lock()
        self.seen = []  # (method, path with query)
        chunk = (b"<p>imgrelay slow-reader filler, nothing to rewrite here.</p>\n" * 1200)[:BIG_CHUNK]
        self.big_first = (b"<!doctype html><html><body>\n" + chunk)[:BIG_CHUNK]
        self.big_chunk = chunk
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 150  # socket timeout: a stalled peer never pins a thread for good

            def log_message(self, *args):
                pass

            def record(self):
                with origin.lock:
                    origin.seen.append((self.command, self.path))

            def reply(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                self.record()
                path, _, query = self.path.partition("?")
                params = dict(p.partition("=")[::2] for p in query.split("&") if p)
                try:
                    if path.endswith(".jpg"):
                        delay = float(params.get("delay", "0") or 0)
                        if delay > 0:
                            time.sleep(min(delay, 10))
                        self.reply(200, "image/jpeg", origin.photo)
                    elif path == "/big.html":
                        self.send_response(200)
                        self.send_header("Content-Type", "text/html; charset=utf-8")
                        self.send_header("Content-Length", str(BIG_CHUNK * BIG_CHUNKS))
                        self.end_headers()
                        self.wfile.write(origin.big_first)
                        for _ in range(BIG_CHUNKS - 1):
                            self.wfile.write(origin.big_chunk)
                    else:
                        self.reply(200, "text/plain", f"origin saw {self.path}\n".encode())
                except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
                    self.close_connection = True

            do_HEAD = do_GET

            def do_TRACE(self):
                self.record()
                self.reply(200, "message/http", b"TRACE reached the origin\n")

            def do_CONNECT(self):
                self.record()
                self.reply(200, "text/plain", b"CONNECT reached the origin\n")

            def do_POST(self):
                self.record()
                try:
                    n = 0
                    if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                        while True:
                            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                            if size == 0:
                                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                    pass
                                break
                            n += len(self.rfile.read(size))
                            self.rfile.readline()
                    else:
                        n = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                    self.reply(200, "text/plain", f"echo {n} bytes\n".encode())
                except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError, ValueError):
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, needle, method=None):
        with self.lock:
            return sum(1 for m, p in self.seen if needle in p and (method is None or m == method))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# The server under test.


class Imgrelay:
    def __init__(self, binary, origin_port, workdir, admin, ulimit=None, name="main"):
        self.binary = binary
        self.dir = Path(workdir)
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.key = self.dir / "imgrelay.key"
        if not self.key.exists():
            self.key.write_text(secrets.token_hex(32) + "\n")
            os.chmod(self.key, 0o600)
        self.config = self.dir / "config.toml"
        self.config.write_text(
            config_text(self.port, self.admin_port, origin_port, str(self.key))
        )
        self.stderr_path = self.dir / f"{name}.stderr"
        self.ulimit = ulimit
        self.proc = None

    def start(self, cwd=None):
        cmd = [self.binary, "serve", "--config", str(self.config)]
        if self.ulimit:
            cmd = ["bash", "-c", f'ulimit -n {self.ulimit} && exec "$@"', "--"] + cmd
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd or self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr_file,
            stderr=self.stderr_file,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"imgrelay exited at start: {self.stderr_path.read_text()[-2000:]}")
            try:
                status, _, _ = http_get(self.port, "/_imgrelay/healthz", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("imgrelay did not answer healthz within 30 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_GRACE_S + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc:
            self.stderr_file.close()
        self.proc = None

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def sign(self, url, size="320x0"):
        out = subprocess.run(
            [self.binary, "sign", "--config", str(self.config), "--size", size, url],
            capture_output=True, text=True, timeout=30, cwd=self.dir,
        )
        if out.returncode != 0:
            raise RuntimeError(f"sign failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()


def config_text(port, admin_port, origin_port, key_file, resolve=True):
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f"shutdown_grace_s = {SHUTDOWN_GRACE_S}",
    ]
    if admin_port:
        lines.append(f'admin_listen = "127.0.0.1:{admin_port}"')
    lines += ["", "[signing]", f"key_file = {json.dumps(key_file)}", "", "[upstream]"]
    if resolve:
        lines.append(f'resolve = {{ "{IMAGE_HOST}:80" = "127.0.0.1:{origin_port}" }}')
    lines += ["", "[origin]", f'url = "http://127.0.0.1:{origin_port}"', ""]
    return "\n".join(lines) + "\n"


def supports_admin_listen(binary, tmp):
    d = Path(tempfile.mkdtemp(prefix="probe-", dir=tmp))
    key = d / "imgrelay.key"
    key.write_text(secrets.token_hex(32) + "\n")
    os.chmod(key, 0o600)
    cfg = d / "config.toml"
    cfg.write_text(config_text(free_port(), free_port(), free_port(), str(key)))
    out = subprocess.run([binary, "check-config", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    return out.returncode == 0, " ".join((out.stderr or out.stdout).split())


# --------------------------------------------------------------------------------------------
# Small HTTP helpers.


def http_get(port, path, timeout=10, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def read_head(sock, deadline):
    """Reads one response head from a raw socket; returns (status, headers, leftover) or None."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (socket.timeout, OSError):
            return None
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def raw_request(port, payload, timeout=10):
    """Sends raw bytes, returns (status or None, headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = read_head(s, time.monotonic() + timeout)
        return (got[0], got[1]) if got else (None, {})


def wait_closed(sock, cap):
    """Blocks until the peer closes (EOF or reset) or `cap` seconds pass.
    Returns (seconds or None, bytes received meanwhile)."""
    start = time.monotonic()
    got = 0
    while True:
        left = cap - (time.monotonic() - start)
        if left <= 0:
            return None, got
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None, got
        except OSError:
            return time.monotonic() - start, got
        if not data:
            return time.monotonic() - start, got
        got += len(data)


def fmt_s(seconds, cap):
    return f"not closed within {cap:.0f} s" if seconds is None else f"{seconds:.1f} s"


def tcp_state(server_port, client_port):
    """State of the server side of one loopback connection from /proc/net/tcp ('01' =
    established), or None when the server has no such socket any more."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return "?"
    for line in lines:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == server_port and int(f[2].rsplit(":", 1)[1], 16) == client_port:
            return f[3]
    return None


# --------------------------------------------------------------------------------------------
# The attacks. Each returns (name, figure).


def attack_signing_oracle(srv):
    html = b'<img src="https://cors.zfour.workers.dev/?http://any-host.example/x.jpg">'
    status, _, body = http_get(srv.port, "/_imgrelay/rewrite", method="POST", body=html,
                               headers={"Content-Type": "text/html"})
    signed = re.search(rb"/img/[A-Za-z0-9_-]{10,}/", body) is not None
    mstatus, _, mbody = http_get(srv.port, "/_imgrelay/metrics")
    leaks = b"imgrelay_" in mbody
    fig = (f"public rewrite: {status}, signed /img/ URL in reply: {'yes' if signed else 'no'}; "
           f"public metrics: {mstatus}{' (metrics text served)' if leaks else ''}")
    if srv.admin_port:
        astatus, _, abody = http_get(srv.admin_port, "/_imgrelay/rewrite", method="POST", body=html,
                                     headers={"Content-Type": "text/html"})
        asigned = re.search(rb"/img/[A-Za-z0-9_-]{10,}/", abody) is not None
        fig += f" (control plane rewrite: {astatus}, signs: {'yes' if asigned else 'no'})"
    return "1. signing oracle on the public port", fig


def attack_idle_tcp(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        secs, got = wait_closed(s, CAP_S)
    extra = f", {got} bytes sent to it first" if got else ""
    return "2. idle TCP, never a byte", f"{fmt_s(secs, CAP_S)}{extra}"


def attack_idle_keepalive(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"GET /_imgrelay/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        got = read_head(s, time.monotonic() + 10)
        if not got:
            return "3. idle keep-alive after healthz", "healthz not answered"
        status, headers, rest = got
        need = int(headers.get("content-length", "0")) - len(rest)
        s.settimeout(10)
        while need > 0:
            data = s.recv(need)
            if not data:
                break
            need -= len(data)
        secs, _ = wait_closed(s, CAP_S)
    return "3. idle keep-alive after healthz", f"{fmt_s(secs, CAP_S)} (healthz {status})"


def attack_slow_reader(srv):
    total = BIG_CHUNK * BIG_CHUNKS
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        client_port = s.getsockname()[1]
        s.sendall(b"GET /big.html HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n")
        start = time.monotonic()
        dropped = None
        while time.monotonic() - start < CAP_S:
            time.sleep(1)
            st = tcp_state(srv.port, client_port)
            if st != "01":
                dropped = time.monotonic() - start
                break
        # Now read what arrives: a dropped connection ends early, a live one delivers everything.
        got = 0
        eof = False
        read_deadline = time.monotonic() + 60
        while time.monotonic() < read_deadline and got < total + 4096:
            s.settimeout(5 if dropped is not None else 10)
            try:
                data = s.recv(1 << 20)
            except socket.timeout:
                break
            except OSError:
                eof = True
                break
            if not data:
                eof = True
                break
            got += len(data)
    finally:
        s.close()
    mib = got / (1 << 20)
    if dropped is not None:
        fig = f"dropped after {dropped:.1f} s; client received {got} bytes ({mib:.1f} MiB of 50)"
        if not eof:
            fig += " (no EOF seen while reading)"
    else:
        fig = (f"not dropped within {CAP_S:.0f} s; reading then gave {got} bytes ({mib:.1f} MiB"
               f" of 50){', then EOF' if eof else ''}")
    return "4. slow reader, 50 MiB page", fig


def attack_trickle(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    status = None
    how = None
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < CAP_S and sent < 1000:
            try:
                s.sendall(b"x")
                sent += 1
            except OSError:
                how = "closed (send failed)"
                break
            # Wait up to 2 s for the server to say something.
            s.settimeout(2)
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                how = "reset"
                break
            if not data:
                how = "closed without an answer"
                break
            m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
            status = int(m.group(1)) if m else None
            how = f"answered {status}"
            break
        secs = time.monotonic() - start
    finally:
        s.close()
    if how is None:
        return "5. trickled body, 1 B / 2 s", f"still open after {CAP_S:.0f} s ({sent} bytes sent)"
    return "5. trickled body, 1 B / 2 s", f"{how} after {secs:.1f} s ({sent} bytes sent)"


def attack_fd_exhaustion(binary, origin, tmp, admin):
    d = Path(tempfile.mkdtemp(prefix="ulimit-", dir=tmp))
    srv = Imgrelay(binary, origin.port, d, admin, ulimit=256, name="ulimit")
    srv.start()
    socks = []
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect(("127.0.0.1", srv.port))
                socks.append(s)
            except OSError:
                s.close()
        opened = len(socks)
        time.sleep(0.5)
        start = time.monotonic()
        status = None
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=HEALTHZ_CAP_S) as h:
                h.sendall(b"GET /_imgrelay/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                got = read_head(h, start + HEALTHZ_CAP_S)
                status = got[0] if got else None
        except OSError:
            pass
        secs = time.monotonic() - start
    finally:
        for s in socks:
            s.close()
        time.sleep(0.5)
        srv.stop()
    text = srv.stderr()
    fails = sum(1 for line in text.splitlines() if "accept failed" in line)
    took = f"answered {status} in {secs:.1f} s" if status else f"no answer within {HEALTHZ_CAP_S:.0f} s"
    return ("6. 300 idle sockets, ulimit -n 256",
            f"healthz {took}; {fails} 'accept failed' lines on stderr ({opened}/300 sockets connected)")


def attack_abandoned(srv, origin):
    tag = f"abandon-{secrets.token_hex(4)}"
    path = srv.sign(f"http://{IMAGE_HOST}/photo.jpg?delay=1&t={tag}")
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: image/webp\r\n\r\n".encode()
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(req)
        socks.append(s)
    time.sleep(0.1)
    for s in socks:
        s.close()
    time.sleep(3)
    before = origin.count(tag)
    status, headers, _ = http_get(srv.port, path, headers={"Accept": "image/webp"}, timeout=15)
    after = origin.count(tag)
    return ("7. 10 abandoned requests, one variant",
            f"origin requests after 3 s: {before}; next request {status} X-Cache {headers.get('x-cache', '-')}"
            f" (origin requests then: {after})")


def attack_host_trace(srv, origin):
    t1 = f"/nohost-{secrets.token_hex(4)}"
    st1, _ = raw_request(srv.port, f"GET {t1} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    time.sleep(0.3)
    seen1 = origin.count(t1)
    t2 = f"/trace-{secrets.token_hex(4)}"
    st2, _ = raw_request(srv.port, f"TRACE {t2} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    time.sleep(0.3)
    seen2 = origin.count(t2)
    yn = lambda n: "yes" if n else "no"
    return ("8. no Host / TRACE to the page proxy",
            f"no Host: {st1}, origin got it: {yn(seen1)}; TRACE: {st2}, origin got it: {yn(seen2)}")


def attack_csp_on_403(srv):
    path = srv.sign(f"http://{IMAGE_HOST}/photo.jpg?t=csp")
    parts = path.split("/")  # ['', 'img', SIG, opts, src]
    sig = parts[2]
    parts[2] = ("B" if sig[0] != "B" else "C") + sig[1:]
    status, headers, _ = http_get(srv.port, "/".join(parts))
    csp = headers.get("content-security-policy")
    want = csp == "default-src 'none'; sandbox"
    return ("9. CSP on an image-route 403",
            f"{status}, CSP sandbox: {'yes' if want else 'no'} ({csp!r})")


def attack_ssrf_inside_netns(binary, tmp, admin):
    """Runs in a fresh network namespace (only loopback): origin, server, one signed request."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    origin = Origin()
    d = Path(tempfile.mkdtemp(prefix="ssrf-", dir=tmp))
    srv = Imgrelay(binary, origin.port, d, admin, name="ssrf")
    try:
        srv.start()
        tag = f"ssrf-{secrets.token_hex(4)}"
        path = srv.sign(f"http://[::ffff:0:7f00:1]:{origin.port}/photo.jpg?t={tag}")
        status, _, _ = http_get(srv.port, path, timeout=20)
        time.sleep(0.3)
        seen = origin.count(tag)
        return {"status": status, "seen": seen}
    finally:
        srv.stop()
        origin.stop()


def attack_ssrf(binary, tmp, admin):
    name = "10. SSRF via [::ffff:0:7f00:1] (IPv4-translated)"
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return name, "skipped: needs root, unshare and ip for a private network namespace"
    cmd = ["unshare", "-n", sys.executable, str(Path(__file__).resolve()), binary,
           "--ssrf-netns", str(tmp)] + (["--admin"] if admin else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return name, f"helper failed ({out.returncode}): {out.stderr.strip()[-300:]}"
    verdict = "refused" if res["status"] == 403 else "not refused"
    return name, (f"{res['status']} ({verdict}), origin saw it: {'yes' if res['seen'] else 'no'}"
                  " (private netns, origin on IPv4 loopback only)")


def attack_keys(binary, origin, tmp, admin):
    url = f"http://{IMAGE_HOST}/photo.jpg"
    figs = []
    for mode in (0o666, 0o644):
        d = Path(tempfile.mkdtemp(prefix=f"key{mode:o}-", dir=tmp))
        key = d / "imgrelay.key"
        key.write_text(secrets.token_hex(32) + "\n")
        os.chmod(key, mode)
        cfg = d / "config.toml"
        cfg.write_text(config_text(free_port(), None, origin.port, str(key)))
        out = subprocess.run([binary, "sign", "--config", str(cfg), "--size", "320x0", url],
                             capture_output=True, text=True, timeout=30, cwd=d)
        err = " ".join(out.stderr.split()).replace(str(d) + "/", "")
        figs.append(f"{mode:o}: exit {out.returncode}, stderr {err[:140]!r}")
    # Relative key_file next to the config, serve started from another directory.
    confdir = Path(tempfile.mkdtemp(prefix="confdir-", dir=tmp))
    cwd = Path(tempfile.mkdtemp(prefix="cwd-", dir=tmp))
    key = confdir / "imgrelay.key"
    key.write_text(secrets.token_hex(32) + "\n")
    os.chmod(key, 0o600)
    port, admin_port = free_port(), (free_port() if admin else None)
    (confdir / "config.toml").write_text(config_text(port, admin_port, origin.port, "imgrelay.key"))
    srv = Imgrelay.__new__(Imgrelay)
    srv.binary, srv.dir, srv.port, srv.admin_port = binary, confdir, port, admin_port
    srv.config, srv.ulimit, srv.proc = confdir / "config.toml", None, None
    srv.stderr_path = confdir / "relative.stderr"
    try:
        srv.start(cwd=cwd)
        created = (cwd / "imgrelay.key").exists()
    finally:
        srv.stop()
    figs.append(f"relative key_file, serve from another cwd: new key created in cwd: {'yes' if created else 'no'}")
    return "11. key files", "; ".join(figs)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--label", default=None)
    ap.add_argument("--ssrf-netns", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--admin", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())

    if args.ssrf_netns:  # helper mode, already inside `unshare -n`
        print(json.dumps(attack_ssrf_inside_netns(binary, Path(args.ssrf_netns), args.admin)))
        return 0

    label = args.label or binary
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))

    tmp = Path(tempfile.mkdtemp(prefix="imgrelay-attacks-"))
    origin = Origin()
    srv = None
    results = []
    try:
        admin, why = supports_admin_listen(binary, tmp)
        print(f"binary: {binary} ({label})")
        print(f"admin_listen: {'supported, control plane on its own port' if admin else 'rejected by check-config, omitted'}"
              f"{'' if admin else ' (' + why[:160] + ')'}")
        print("timeouts: the binary's shipped defaults, none shortened; shutdown_grace_s = 2 only to stop quickly")
        srv = Imgrelay(binary, origin.port, Path(tempfile.mkdtemp(prefix="main-", dir=tmp)), admin)
        srv.start()
        log(f"server on 127.0.0.1:{srv.port}, origin on 127.0.0.1:{origin.port}")

        results.append(attack_signing_oracle(srv))
        print(" | ".join(results[-1]), flush=True)

        # 2-5: long waits, run side by side on the same server.
        timed = [attack_idle_tcp, attack_idle_keepalive, attack_slow_reader, attack_trickle]
        out = {}

        def run(fn):
            try:
                out[fn] = fn(srv)
            except Exception as e:  # report, don't hang
                out[fn] = (fn.__name__, f"error: {e!r}")

        log("attacks 2-5 running concurrently (up to 130 s)")
        threads = [threading.Thread(target=run, args=(fn,), daemon=True) for fn in timed]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CAP_S + 90)
        for fn in timed:
            results.append(out.get(fn, (fn.__name__, "error: did not finish")))
            print(" | ".join(results[-1]), flush=True)

        log("attack 6 (ulimit -n 256)")
        results.append(attack_fd_exhaustion(binary, origin, tmp, admin))
        print(" | ".join(results[-1]), flush=True)

        for fn in (lambda: attack_abandoned(srv, origin), lambda: attack_host_trace(srv, origin),
                   lambda: attack_csp_on_403(srv)):
            results.append(fn())
            print(" | ".join(results[-1]), flush=True)

        log("attack 10 (private network namespace)")
        results.append(attack_ssrf(binary, tmp, admin))
        print(" | ".join(results[-1]), flush=True)

        log("attack 11 (key files)")
        results.append(attack_keys(binary, origin, tmp, admin))
        print(" | ".join(results[-1]), flush=True)
    finally:
        if srv:
            srv.stop()
        origin.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"| attack | {label} |")
    print("|---|---|")
    for name, fig in results:
        print(f"| {name} | {fig.replace('|', '/')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
