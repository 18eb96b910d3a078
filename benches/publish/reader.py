#!/usr/bin/env python3
"""Measuring side of benches/publish.sh (Python standard library only).

Subcommands:
  posts --out DIR --host HOST [--posts N] [--images K]
        N Hexo posts of K pictures each, every picture a distinct URL on HOST wrapped in a CORS
        proxy: a front-matter cover without a hint, then <img> tags, most with data-size
  read --port PORT DIR
        the first reader of each rewritten post in DIR: every <img src> of the post fetched as a
        browser does (6 connections, a browser's Accept), timed from the first request to the last
        image byte; prints JSON with the per-post times and the X-Cache-Status counts
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import statistics
import sys
import time

SOURCES = [
    ("photo-640x422.jpg", (640, 422)),
    ("photo-1280x960.jpg", (1280, 960)),
    ("photo-640x480.jpg", (640, 480)),
    ("photo-4000x3000.jpg", (4000, 3000)),
]
ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def make_posts(args):
    os.makedirs(args.out, exist_ok=True)
    n = 0
    for p in range(args.posts):
        def url(k):
            name, _ = SOURCES[(p + k) % len(SOURCES)]
            return f"https://cors.zfour.workers.dev/?http://{args.host}/{name}?post={p}&amp;k={k}"

        lines = ["---", f"title: post {p}", f"cover: {url(0).replace('&amp;', '&')}", "---", ""]
        for k in range(1, args.images):
            _, (w, h) = SOURCES[(p + k) % len(SOURCES)]
            hint = f' data-size="{w},{h}"' if k % 3 else ""
            lines.append(f"<p>paragraph {k} of post {p}</p>")
            lines.append(f'<img src="{url(k)}"{hint} referrerpolicy="no-referrer">')
            n += 1
        with open(os.path.join(args.out, f"post-{p:03}.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print(json.dumps({"posts": args.posts, "img_tags": n, "pictures": args.posts * args.images}))
    return 0


def fetch(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Accept": ACCEPT})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("X-Cache-Status", "-"), len(body)


def read(args):
    posts = sorted(os.listdir(args.dir))
    times, statuses, bytes_total = [], {}, 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        for name in posts:
            with open(os.path.join(args.dir, name)) as f:
                text = f.read()
            paths = re.findall(r'<img[^>]* src="(/img/[^"]+)"', text)
            t0 = time.monotonic()
            for status, cache, size in pool.map(lambda p: fetch(args.port, p), paths):
                if status != 200:
                    print(f"{name}: HTTP {status}", file=sys.stderr)
                    return 1
                statuses[cache] = statuses.get(cache, 0) + 1
                bytes_total += size
            times.append((time.monotonic() - t0) * 1000)
    times.sort()
    print(
        json.dumps(
            {
                "posts": len(posts),
                "images": sum(statuses.values()),
                "cache_status": statuses,
                "bytes": bytes_total,
                "median_ms": statistics.median(times),
                "p90_ms": times[int(len(times) * 0.9) - 1],
                "max_ms": times[-1],
                "total_ms": sum(times),
            }
        )
    )
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("posts")
    s.add_argument("--out", required=True)
    s.add_argument("--host", required=True)
    s.add_argument("--posts", type=int, default=32)
    s.add_argument("--images", type=int, default=6)
    s = sub.add_parser("read")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("dir")
    args = p.parse_args()
    return make_posts(args) if args.cmd == "posts" else read(args)


if __name__ == "__main__":
    sys.exit(main())
