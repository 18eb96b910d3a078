#!/usr/bin/env bash
# Load benchmark: imgrelay against the usual do-it-yourself alternative, nginx `image_filter` behind
# `proxy_cache`, on one machine in one run. Everything listens on 127.0.0.1 (free ports); nothing else is
# contacted. Prints a markdown table of medians with the imgrelay/nginx ratio.
#
#   benches/load.sh                  # whole run (a few minutes)
#   LOAD_ROUNDS=5 benches/load.sh    # more rounds
#   LOAD_ONLY=nginx benches/load.sh  # the nginx half alone (no imgrelay build)
#
# Environment: LOAD_ROUNDS (3), LOAD_HIT_SECONDS (8), LOAD_MISS_SECONDS (6), LOAD_MISS_CONNECTIONS (8),
# LOAD_ONLY (imgrelay|nginx), LOAD_KEEP=1 keeps the temp dir, LOAD_OUT=FILE also writes the report there.
#
# Scenarios (each server in alternation, imgrelay then nginx, LOAD_ROUNDS rounds, medians reported):
#   hit   one resized URL (640x422 source, fit 320x211) again and again, wrk -t2 -c64 --latency
#   miss  every request a distinct variant (box Wx480 or 640xH, distinct source query strings) of the
#         1280x960 and the 4000x3000 JPEG; CPU per image from /proc/<pid>/stat of the server processes
#   memory peak RSS (VmHWM) after the miss scenarios
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER=(python3 "$ROOT/benches/load/helper.py")
ROUNDS=${LOAD_ROUNDS:-3}
HIT_SECONDS=${LOAD_HIT_SECONDS:-8}
MISS_SECONDS=${LOAD_MISS_SECONDS:-6}
HIT_CONNECTIONS=64
MISS_CONNECTIONS=${LOAD_MISS_CONNECTIONS:-8}
ONLY=${LOAD_ONLY:-}
ORIGIN_HOST=img.origin.example
IMAGES="$ROOT/tests/data/images"
COMMAND="$0${*:+ $*}"
for v in LOAD_ROUNDS LOAD_HIT_SECONDS LOAD_MISS_SECONDS LOAD_MISS_CONNECTIONS LOAD_ONLY; do
    [[ -n "${!v:-}" ]] && COMMAND="$v=${!v} $COMMAND"
done

run_imgrelay() { [[ "$ONLY" != nginx ]]; }
run_nginx() { [[ "$ONLY" != imgrelay ]]; }
log() { printf '[load] %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------------
find_image_filter() {
    if nginx -V 2>&1 | grep -q -- '--with-http_image_filter_module\( \|$\)'; then
        echo static
        return
    fi
    local d
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules /usr/lib64/nginx/modules /etc/nginx/modules; do
        if [[ -f "$d/ngx_http_image_filter_module.so" ]]; then
            echo "$d/ngx_http_image_filter_module.so"
            return
        fi
    done
}

install_missing() {
    local pkgs=()
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v nginx >/dev/null || pkgs+=(nginx)
    if ! command -v nginx >/dev/null || [[ -z "$(find_image_filter)" ]]; then
        pkgs+=(libnginx-mod-http-image-filter)
    fi
    local img
    for img in photo-640x422 photo-1280x960 photo-4000x3000; do
        if [[ ! -s "$IMAGES/$img.jpg" ]] && ! command -v convert >/dev/null; then
            pkgs+=(imagemagick)
            break
        fi
    done
    ((${#pkgs[@]})) || return 0
    local sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    log "installing: ${pkgs[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
}

ensure_images() {
    mkdir -p "$IMAGES"
    local spec name size
    for spec in photo-640x422:640x422 photo-1280x960:1280x960 photo-4000x3000:4000x3000; do
        name=${spec%%:*}
        size=${spec#*:}
        if [[ ! -s "$IMAGES/$name.jpg" ]]; then
            log "generating $IMAGES/$name.jpg"
            convert -size "$size" -seed 5 plasma:fractal -blur 0x1 -quality 90 "$IMAGES/$name.jpg"
        fi
    done
}

install_missing
ensure_images
IMAGE_FILTER=$(find_image_filter)
[[ -n "$IMAGE_FILTER" ]] || { log "nginx image_filter module not found"; exit 1; }

BIN="$ROOT/target/release/imgrelay"
if run_imgrelay; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet --bin imgrelay)
fi

# --- processes -------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgrelay-load.XXXXXX")
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ "${LOAD_KEEP:-}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r ORIGIN_PORT RESIZE_PORT NGINX_PORT IMGRELAY_PORT < <("${HELPER[@]}" ports 4)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

NGINX_USER=""
[[ "$(id -u)" -eq 0 ]] && NGINX_USER="user root root;"
LOAD_MODULE=""
[[ "$IMAGE_FILTER" == static ]] || LOAD_MODULE="load_module $IMAGE_FILTER;"

# Common head of both nginx configs: everything under the temp dir, no access log.
nginx_head() {
    local dir=$1 workers=$2
    cat <<EOF
$NGINX_USER
$LOAD_MODULE
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types { image/jpeg jpg jpeg; image/png png; }
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
}

# Starts nginx in the foreground mode as a child of this script; its master pid ends up in STARTED_PID.
start_nginx() {
    local dir=$1
    mkdir -p "$dir/tmp"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >&2
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 </dev/null &
    STARTED_PID=$!
    STARTED+=("$STARTED_PID")
}

# The origin: static files, one worker; its CPU is not counted for either server.
mkdir -p "$WORK/origin"
{
    nginx_head "$WORK/origin" 1
    cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $IMAGES;
    }
}
EOF
} >"$WORK/origin/nginx.conf"
start_nginx "$WORK/origin"
"${HELPER[@]}" wait "$ORIGIN_PORT" || { log "origin did not start"; exit 1; }

# nginx: the usual recipe. A resizing server block (image_filter, size from the URL) behind a caching
# one (proxy_cache on disk); as many workers as cores, like imgrelay's transform pool.
if run_nginx; then
    mkdir -p "$WORK/nginx/cache"
    {
        nginx_head "$WORK/nginx" auto
        cat <<EOF
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 32; }
    upstream resizer { server 127.0.0.1:$RESIZE_PORT; keepalive 32; }
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=images:16m max_size=1g inactive=7d
                     use_temp_path=off;

    server {
        listen 127.0.0.1:$RESIZE_PORT;
        location ~ ^/resize/(?<width>\d+)x(?<height>\d+)/(?<file>.+)\$ {
            proxy_pass http://origin/\$file\$is_args\$args;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $ORIGIN_HOST;
            image_filter resize \$width \$height;
            image_filter_jpeg_quality 80;
            image_filter_buffer 32M;
        }
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /img/ {
            proxy_pass http://resizer/resize/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache images;
            proxy_cache_key \$uri\$is_args\$args;
            proxy_cache_valid 200 7d;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
    } >"$WORK/nginx/nginx.conf"
    start_nginx "$WORK/nginx"
    NGINX_PID=$STARTED_PID
    "${HELPER[@]}" wait "$NGINX_PORT" || { log "nginx did not start"; exit 1; }
    sleep 0.5
    # CPU: master, workers and cache manager (the cache loader exits on its own, so it is left out).
    # Memory: the workers (each serves requests; the master and cache manager stay small).
    read -r -a NGINX_WORKERS < <("${HELPER[@]}" children "$NGINX_PID" "worker process")
    read -r -a NGINX_MANAGER < <("${HELPER[@]}" children "$NGINX_PID" "cache manager")
    NGINX_CPU_PIDS=$(IFS=,; echo "$NGINX_PID,${NGINX_WORKERS[*]}${NGINX_MANAGER[*]:+,${NGINX_MANAGER[*]}}")
    log "nginx master $NGINX_PID, workers ${NGINX_WORKERS[*]}, cache manager ${NGINX_MANAGER[*]:-none}"
fi

if run_imgrelay; then
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/imgrelay.key"
    chmod 600 "$WORK/imgrelay.key"
    cat >"$WORK/imgrelay.toml" <<EOF
[server]
listen = "127.0.0.1:$IMGRELAY_PORT"
public_prefix = "/img"

[signing]
key_file = "$WORK/imgrelay.key"

[upstream]
resolve = { "$ORIGIN_HOST:80" = "127.0.0.1:$ORIGIN_PORT" }

[image]
quality = 80

[cache]
memory_mb = 256
source_memory_mb = 64

[log]
level = "warn"
EOF
    "$BIN" serve --config "$WORK/imgrelay.toml" >"$WORK/imgrelay.log" 2>&1 </dev/null &
    IMGRELAY_PID=$!
    STARTED+=("$IMGRELAY_PID")
    "${HELPER[@]}" wait "$IMGRELAY_PORT" || { log "imgrelay did not start"; cat "$WORK/imgrelay.log" >&2; exit 1; }
    SIGN="$BIN sign --config $WORK/imgrelay.toml"
fi

# --- URLs ------------------------------------------------------------------------------------------
HIT_SRC=photo-640x422.jpg
MISS_SOURCES=(photo-1280x960.jpg photo-4000x3000.jpg)
NGINX_HIT="/img/320x211/$HIT_SRC"
if run_imgrelay; then
    IMGRELAY_HIT=$(echo "http://$ORIGIN_HOST/$HIT_SRC" | $SIGN --size 320x211)
    # `sign` prints a path, or an absolute URL when public_prefix is one: keep the path.
    [[ "$IMGRELAY_HIT" == *://* ]] && IMGRELAY_HIT=/${IMGRELAY_HIT#*://*/}
fi
# 420 boxes x PER_BOX query strings per source: distinct URLs for every miss request of every round.
PER_BOX=${LOAD_PER_BOX:-24}
log "preparing miss URL lists"
"${HELPER[@]}" variants --out "$WORK/urls" --sources "$(IFS=,; echo "${MISS_SOURCES[*]}")" \
    --host "$ORIGIN_HOST" --per-box "$PER_BOX" ${SIGN:+--sign "$SIGN"}

port_of() { if [[ $1 == imgrelay ]]; then echo "$IMGRELAY_PORT"; else echo "$NGINX_PORT"; fi; }
cpu_pids_of() { if [[ $1 == imgrelay ]]; then echo "$IMGRELAY_PID"; else echo "$NGINX_CPU_PIDS"; fi; }
hit_path_of() { if [[ $1 == imgrelay ]]; then echo "$IMGRELAY_HIT"; else echo "$NGINX_HIT"; fi; }
SERVERS=()
run_imgrelay && SERVERS+=(imgrelay)
run_nginx && SERVERS+=(nginx)

# --- checks and warm-up ----------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do
    port=$(port_of "$s")
    "${HELPER[@]}" probe "$port" "$(hit_path_of "$s")" 320 211 >/dev/null
    log "$s hit URL: $("${HELPER[@]}" probe "$port" "$(hit_path_of "$s")" 320 211)"
    for src in "${MISS_SOURCES[@]}"; do
        # The first variant of each list warms pools and connections; the runs start after it.
        read -r bw bh path < <(head -n 1 "$WORK/urls/$s-$src.txt")
        "${HELPER[@]}" probe "$port" "$path" "$bw" "$bh" >/dev/null
        echo 1 >"$WORK/offset-$s-$src"
    done
done

# --- scenarios -------------------------------------------------------------------------------------
HIT_LABEL="hit: 640x422 → fit 320x211, ${HIT_CONNECTIONS} conn"
for round in $(seq "$ROUNDS"); do
    for s in "${SERVERS[@]}"; do
        port=$(port_of "$s")
        read -r -a pids < <(cpu_pids_of "$s" | tr , ' ')
        cpu0=$("${HELPER[@]}" cpu "${pids[@]}")
        wrk -t2 -c"$HIT_CONNECTIONS" -d"${HIT_SECONDS}s" --latency "http://127.0.0.1:$port$(hit_path_of "$s")" \
            >"$WORK/wrk-$s-$round.txt"
        cpu1=$("${HELPER[@]}" cpu "${pids[@]}")
        out=$("${HELPER[@]}" wrk "$WORK/wrk-$s-$round.txt" --record "$RESULTS" --scenario "$HIT_LABEL" --server "$s")
        requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"] or 0)' "$out")
        if ((requests > 0)); then
            "${HELPER[@]}" record "$RESULTS" "$HIT_LABEL" "CPU µs per request" "$s" \
                "$(python3 -c 'import sys; print((float(sys.argv[2])-float(sys.argv[1]))*1000/int(sys.argv[3]))' "$cpu0" "$cpu1" "$requests")"
        fi
        log "hit round $round $s: $out"
    done
done

for src in "${MISS_SOURCES[@]}"; do
    label="miss: ${src#photo-} → fit ≤640x480, ${MISS_CONNECTIONS} conn"
    label=${label/.jpg/}
    for round in $(seq "$ROUNDS"); do
        for s in "${SERVERS[@]}"; do
            out=$("${HELPER[@]}" miss --port "$(port_of "$s")" --urls "$WORK/urls/$s-$src.txt" \
                --offset-file "$WORK/offset-$s-$src" --duration "$MISS_SECONDS" \
                --concurrency "$MISS_CONNECTIONS" --pids "$(cpu_pids_of "$s")" \
                --record "$RESULTS" --scenario "$label" --server "$s")
            log "miss $src round $round $s: $out"
        done
    done
done

MEM_LABEL="memory after the miss scenarios"
if run_imgrelay; then
    "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "peak RSS MB" imgrelay \
        "$(( $("${HELPER[@]}" hwm "$IMGRELAY_PID") / 1024 ))"
fi
if run_nginx; then
    "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "peak RSS MB" nginx \
        "$(( $("${HELPER[@]}" hwm "${NGINX_WORKERS[@]}") / 1024 ))"
fi

# --- report ----------------------------------------------------------------------------------------
report() {
    echo "## imgrelay vs nginx image_filter + proxy_cache"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "- command: \`$COMMAND\`"
    local versions=()
    run_imgrelay && versions+=("$("$BIN" --version)")
    versions+=("$(nginx -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')")
    versions+=("commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)")
    echo "- versions: $(IFS=,; echo "${versions[*]}" | sed 's/,/, /g')"
    echo "- rounds: $ROUNDS per scenario, servers alternating (imgrelay, nginx, imgrelay, nginx, …); hit ${HIT_SECONDS}s per run, miss ${MISS_SECONDS}s per run"
    echo
    "${HELPER[@]}" table "$RESULTS"
    echo
    echo "Notes: hit latencies and req/s from \`wrk -t2 -c$HIT_CONNECTIONS --latency\` (client on the same 2 cores)."
    echo "Miss: each request a distinct URL (box Wx480 for W in 400..639 or 640xH for H in 300..479, times"
    echo "distinct source query strings), checked 200, a cache MISS, and fitting its box; a fixed-duration run whose"
    echo "in-flight requests are all awaited, so CPU ms per image = (utime+stime after − before) / images served."
    echo "imgrelay: one process (\`cache.memory_mb = 256\`, \`cache.source_memory_mb = 64\`, quality 80; each source"
    echo "is fetched once and its sizes come from the source cache). nginx: CPU of master + workers + cache manager,"
    echo "peak RSS = sum of the worker processes' VmHWM; image_filter_jpeg_quality 80; the resize block fetches the"
    echo "source from the origin for every variant (the typical recipe). The origin (a separate nginx, static files)"
    echo "is counted for neither."
}
if [[ -n "${LOAD_OUT:-}" ]]; then
    report | tee "$LOAD_OUT"
else
    report
fi
