#!/usr/bin/env python3
"""Measuring side of benches/load.sh (Python standard library only).

Subcommands:
  ports N                      print N free TCP ports on 127.0.0.1
  wait PORT [SECONDS]          wait until 127.0.0.1:PORT accepts connections
  cpu PID...                   utime+stime of the processes, in ms
  hwm PID...                   sum of VmHWM (peak RSS) of the processes, in kB
  rss PID                      VmRSS (current RSS) of a process, in kB
  get PORT PATH                print the body of one GET (e.g. /_imgrelay/metrics)
  probe PORT PATH [W H]        one GET; prints status, cache header, size and JPEG dimensions as JSON;
                               with W H, fails unless the image fits the box W x H
  miss ...                     distinct-variant load for a fixed duration (see `miss --help`)
  wrk FILE                     parse `wrk --latency` output into JSON
  children PPID [PATTERN]      child pids whose command line contains PATTERN
  variants ...                 URL lists for the miss scenario (signed with `imgrelay sign`)
  record FILE SCENARIO METRIC SERVER VALUE   append one result row
  table RESULTS [COLUMN...]    markdown table of medians from the results TSV
  document --mb N --out FILE   an HTML document of about N MiB built from the posts
  measure [--stdin F] -- CMD   run CMD; wall, CPU and peak RSS as JSON
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_ms(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            # The command name is in parentheses and may hold spaces: split after the last ')'.
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        total += int(fields[11]) + int(fields[12])
    return total * 1000.0 / CLK_TCK


def hwm_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    sys.stdout.write(resp.read().decode(errors="replace"))
    return 0 if resp.status == 200 else 1


def jpeg_size(data):
    """(width, height) from the first SOF marker of a JPEG, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def fits_box(size, box_w, box_h):
    """True when an image of `size` is the fit-inside result for the box (one side meets it, +-1 px)."""
    if size is None:
        return False
    w, h = size
    if w > box_w or h > box_h:
        return False
    return abs(w - box_w) <= 1 or abs(h - box_h) <= 1


def cache_header(resp):
    return resp.getheader("X-Cache") or resp.getheader("X-Cache-Status") or ""


def probe(port, path, box):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    size = jpeg_size(body)
    out = {
        "status": resp.status,
        "type": resp.getheader("Content-Type"),
        "cache": cache_header(resp),
        "bytes": len(body),
        "size": list(size) if size else None,
    }
    print(json.dumps(out))
    if resp.status != 200:
        return 1
    if box and not fits_box(size, *box):
        print(f"output {size} does not fit box {box}", file=sys.stderr)
        return 1
    return 0


def children(ppid, pattern):
    """Pids of the processes whose parent is `ppid` and whose command line contains `pattern`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == ppid and pattern in cmdline:
            out.append(int(name))
    return sorted(out)


def boxes():
    """The miss boxes, all fitting a 640x480 box or smaller: Wx480 for W in 400..639, then 640xH for
    H in 300..479, in a fixed shuffled order so consecutive requests differ in size."""
    import random

    out = [(w, 480) for w in range(400, 640)] + [(640, h) for h in range(300, 480)]
    random.Random(5).shuffle(out)
    return out


def sign_many(sign_cmd, size, urls):
    """Signed paths for `urls`, one `sign --size` run reading them on stdin."""
    import shlex
    import subprocess
    import urllib.parse

    proc = subprocess.run(
        shlex.split(sign_cmd) + ["--size", size],
        input="".join(u + "\n" for u in urls),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [l.strip() for l in proc.stdout.splitlines() if l.strip()]
    if proc.returncode != 0 or len(lines) != len(urls):
        raise SystemExit(
            f"sign --size {size}: exit {proc.returncode}, {len(lines)} lines for {len(urls)} urls\n{proc.stderr}"
        )
    paths = []
    for line in lines:
        parsed = urllib.parse.urlsplit(line)
        path = parsed.path + ("?" + parsed.query if parsed.query else "") if parsed.scheme else line
        paths.append(path)
    return paths


def make_variants(args):
    """URL lists for the miss scenario: for each source, `per_box` query strings times every box,
    ordered query-major so that one run walks through the sizes of a source before the next one."""
    sources = args.sources.split(",")
    bx = boxes()
    os.makedirs(args.out, exist_ok=True)
    for src in sources:
        with open(os.path.join(args.out, f"nginx-{src}.txt"), "w") as f:
            for k in range(args.per_box):
                for w, h in bx:
                    f.write(f"{w} {h} /img/{w}x{h}/{src}?k={k}\n")
    if not args.sign:
        return 0
    signed = {}  # (src, k, box) -> path
    for w, h in bx:
        urls = [f"http://{args.host}/{src}?k={k}" for src in sources for k in range(args.per_box)]
        paths = sign_many(args.sign, f"{w}x{h}", urls)
        i = 0
        for src in sources:
            for k in range(args.per_box):
                signed[(src, k, (w, h))] = paths[i]
                i += 1
    for src in sources:
        with open(os.path.join(args.out, f"imgrelay-{src}.txt"), "w") as f:
            for k in range(args.per_box):
                for w, h in bx:
                    f.write(f"{w} {h} {signed[(src, k, (w, h))]}\n")
    return 0


def record(path, scenario, server, metrics):
    if not path:
        return
    with open(path, "a") as f:
        for metric, value in metrics:
            if value is not None:
                f.write(f"{scenario}\t{metric}\t{server}\t{value}\n")


def run_miss(args):
    """Requests distinct URLs from the list for `duration` seconds with `concurrency` connections.

    No request is started after the deadline and every started one is awaited, so the CPU measured
    after the run belongs to exactly the requests counted.
    """
    with open(args.urls) as f:
        entries = [line.split() for line in f if line.strip()]
    start = args.start
    if args.offset_file and os.path.exists(args.offset_file):
        with open(args.offset_file) as f:
            start = int(f.read().strip() or 0)
    entries = entries[start:]
    pids = [int(p) for p in args.pids.split(",") if p]
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0, "not_miss": 0, "bad_size": 0, "bytes": 0}
    deadline_holder = {}

    def take():
        with lock:
            if time.monotonic() >= deadline_holder["t"] or state["next"] >= len(entries):
                return None
            e = entries[state["next"]]
            state["next"] += 1
            return e

    def worker():
        conn = None
        while True:
            e = take()
            if e is None:
                break
            box_w, box_h, path = int(e[0]), int(e[1]), e[2]
            resp = body = None
            for _attempt in range(2):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    body = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    if conn is not None:
                        conn.close()
                    conn = None
                    resp = body = None
            with lock:
                if resp is None or resp.status != 200:
                    state["errors"] += 1
                    continue
                state["ok"] += 1
                state["bytes"] += len(body)
                if cache_header(resp).upper() not in ("MISS", "EXPIRED"):
                    state["not_miss"] += 1
                if not args.no_size_check and not fits_box(jpeg_size(body), box_w, box_h):
                    state["bad_size"] += 1
        if conn is not None:
            conn.close()

    cpu0 = cpu_ms(pids)
    t0 = time.monotonic()
    deadline_holder["t"] = t0 + args.duration
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu1 = cpu_ms(pids)
    ok = state["ok"]
    out = {
        "consumed": state["next"],
        "exhausted": state["next"] >= len(entries),
        "ok": ok,
        "errors": state["errors"],
        "not_miss": state["not_miss"],
        "bad_size": state["bad_size"],
        "seconds": round(elapsed, 3),
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "cpu_ms_per_image": (cpu1 - cpu0) / ok if ok else float("nan"),
        "bytes_per_image": state["bytes"] / ok if ok else float("nan"),
    }
    print(json.dumps(out))
    if args.offset_file:
        with open(args.offset_file, "w") as f:
            f.write(str(start + state["next"]))
    record(
        args.record,
        args.scenario,
        args.server,
        [
            ("req/s", out["rps"] if ok else None),
            ("CPU ms per image", out["cpu_ms_per_image"] if ok else None),
            ("output KB per image", out["bytes_per_image"] / 1024 if ok else None),
        ],
    )
    if out["errors"] or out["not_miss"] or out["bad_size"]:
        print(f"warning: {json.dumps(out)}", file=sys.stderr)
    elif out["exhausted"] and args.offset_file:
        print(f"warning: the URL list ran out before the deadline: {json.dumps(out)}", file=sys.stderr)
    return 0


def to_ms(text):
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for suffix in ("us", "ms", "s", "m"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def parse_wrk(path, args):
    out = {"rps": None, "p50_ms": None, "p99_ms": None, "errors": 0, "requests": None}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "Requests/sec:":
                out["rps"] = float(parts[1])
            elif parts[0] == "50%":
                out["p50_ms"] = to_ms(parts[1])
            elif parts[0] == "99%":
                out["p99_ms"] = to_ms(parts[1])
            elif parts[0] == "Non-2xx":
                out["errors"] += int(parts[-1])
            elif parts[0] == "Socket" and parts[1] == "errors:":
                # "Socket errors: connect 0, read 0, write 0, timeout 0"
                out["errors"] += sum(int(p.strip(",")) for p in parts[3::2])
            elif len(parts) >= 2 and parts[1] == "requests" and parts[0].isdigit():
                out["requests"] = int(parts[0])
    print(json.dumps(out))
    record(
        args.record,
        args.scenario,
        args.server,
        [("req/s", out["rps"]), ("p50 ms", out["p50_ms"]), ("p99 ms", out["p99_ms"])],
    )
    if out["errors"]:
        print(f"warning: {out['errors']} errors in {path}", file=sys.stderr)
    return 0 if out["rps"] is not None else 1


def fmt(v):
    if v is None or v != v:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(path, columns):
    """RESULTS rows: scenario<TAB>metric<TAB>column<TAB>value, medians per (scenario, metric, column).

    Rows keep the order of first appearance; with two columns, a ratio first/second is added."""
    rows = {}
    order = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            scenario, metric, column, value = parts
            key = (scenario, metric)
            if key not in rows:
                rows[key] = {}
                order.append(key)
            try:
                rows[key].setdefault(column, []).append(float(value))
            except ValueError:
                pass
    ratio = len(columns) == 2
    head = ["scenario", "metric"] + [f"{c} (median)" for c in columns]
    if ratio:
        head.append(f"{columns[0]}/{columns[1]}")
    head.append("runs")
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * (len(head) - 2))
    for key in order:
        values = [rows[key].get(c, []) for c in columns]
        medians = [statistics.median(v) if v else None for v in values]
        cells = [key[0], key[1]] + [fmt(m) for m in medians]
        if ratio:
            a, b = medians
            cells.append(f"{a / b:.2f}x" if a is not None and b else "n/a")
        cells.append("/".join(str(len(v)) for v in values))
        print("| " + " | ".join(cells) + " |")
    return 0


def make_document(args):
    """An HTML document of about `mb` MiB: the bodies of the Hexo posts (wrapped and plain images,
    data-size hints, front matter left out) repeated, so the rewriter has real work all the way."""
    bodies = []
    for name in sorted(os.listdir(args.posts)):
        with open(os.path.join(args.posts, name), "rb") as f:
            text = f.read()
        if text.startswith(b"---"):
            end = text.find(b"\n---", 3)
            if end >= 0:
                text = text[text.find(b"\n", end + 4) + 1 :]
        bodies.append(text)
    chunk = b"\n".join(bodies)
    target = int(args.mb * 1024 * 1024)
    head = b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>scaling</title></head><body>\n'
    tail = b"</body></html>\n"
    written = 0
    images = 0
    with open(args.out, "wb") as f:
        f.write(head)
        written += len(head)
        while written + len(chunk) + len(tail) <= target or written == len(head):
            f.write(chunk)
            written += len(chunk)
            images += chunk.count(b"<img")
        f.write(tail)
        written += len(tail)
    print(json.dumps({"bytes": written, "img_tags": images}))
    return 0


def measure(cmd, stdin_path):
    """Runs `cmd` (stdout discarded): wall seconds, CPU seconds (rusage) and peak RSS.

    The peak is VmHWM polled every 2 ms while the command runs: the child's ru_maxrss would include
    this Python process, whose pages the child shares until it execs."""
    import subprocess

    with open(stdin_path or os.devnull, "rb") as stdin, open(os.devnull, "wb") as devnull:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=devnull)
        hwm = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                hwm = max(hwm, hwm_kb([proc.pid]))
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    out = {
        "exit": proc.returncode,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": hwm / 1024,
    }
    print(json.dumps(out))
    return 0 if out["exit"] == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s = sub.add_parser("wait")
    s.add_argument("port", type=int)
    s.add_argument("seconds", type=float, nargs="?", default=30.0)
    s = sub.add_parser("cpu")
    s.add_argument("pids", type=int, nargs="+")
    s = sub.add_parser("rss")
    s.add_argument("pid", type=int)
    s = sub.add_parser("get")
    s.add_argument("port", type=int)
    s.add_argument("path")
    s = sub.add_parser("hwm")
    s.add_argument("pids", type=int, nargs="+")
    s = sub.add_parser("probe")
    s.add_argument("port", type=int)
    s.add_argument("path")
    s.add_argument("box", type=int, nargs="*")
    s = sub.add_parser("miss", help="distinct-variant load")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--urls", required=True, help="lines of: box_w box_h path")
    s.add_argument("--start", type=int, default=0, help="first line to use")
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--pids", default="", help="comma-separated server pids whose CPU is measured")
    s.add_argument("--no-size-check", action="store_true", help="do not check JPEG dimensions")
    s.add_argument("--offset-file", help="first line to use, read before and updated after the run")
    for name in ("--record", "--scenario", "--server"):
        s.add_argument(name)
    s = sub.add_parser("wrk")
    s.add_argument("file")
    for name in ("--record", "--scenario", "--server"):
        s.add_argument(name)
    s = sub.add_parser("children")
    s.add_argument("ppid", type=int)
    s.add_argument("pattern", nargs="?", default="")
    s = sub.add_parser("variants", help="URL lists for the miss scenario")
    s.add_argument("--out", required=True)
    s.add_argument("--sources", required=True)
    s.add_argument("--host", required=True)
    s.add_argument("--per-box", type=int, required=True)
    s.add_argument("--sign", help="sign command without --size, e.g. 'imgrelay sign --config C'")
    s = sub.add_parser("record")
    s.add_argument("file")
    s.add_argument("scenario")
    s.add_argument("metric")
    s.add_argument("server")
    s.add_argument("value", type=float)
    s = sub.add_parser("table")
    s.add_argument("file")
    s.add_argument("columns", nargs="*", default=["imgrelay", "nginx"])
    s = sub.add_parser("document", help="an HTML document of about MB MiB from the posts")
    s.add_argument("--posts", required=True)
    s.add_argument("--mb", type=float, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("measure", help="run a command, report wall, CPU and peak RSS")
    s.add_argument("--stdin")
    s.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()

    if a.cmd == "ports":
        print(" ".join(str(x) for x in free_ports(a.n)))
        return 0
    if a.cmd == "wait":
        return 0 if wait_port(a.port, a.seconds) else 1
    if a.cmd == "cpu":
        print(f"{cpu_ms(a.pids):.0f}")
        return 0
    if a.cmd == "rss":
        print(rss_kb(a.pid))
        return 0
    if a.cmd == "get":
        return get(a.port, a.path)
    if a.cmd == "hwm":
        print(hwm_kb(a.pids))
        return 0
    if a.cmd == "probe":
        return probe(a.port, a.path, a.box if len(a.box) == 2 else None)
    if a.cmd == "miss":
        return run_miss(a)
    if a.cmd == "wrk":
        return parse_wrk(a.file, a)
    if a.cmd == "children":
        print(" ".join(str(p) for p in children(a.ppid, a.pattern)))
        return 0
    if a.cmd == "variants":
        return make_variants(a)
    if a.cmd == "record":
        record(a.file, a.scenario, a.server, [(a.metric, a.value)])
        return 0
    if a.cmd == "table":
        return table(a.file, a.columns)
    if a.cmd == "document":
        return make_document(a)
    if a.cmd == "measure":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        return measure(cmd, a.stdin)
    return 2


if __name__ == "__main__":
    sys.exit(main())
