#!/usr/bin/env bash
# Load benchmark: imgrelay against the usual do-it-yourself alternative, nginx `image_filter` behind
# `proxy_cache`, on one machine in one run. Everything listens on 127.0.0.1 (free ports); nothing else is
# contacted. Prints a markdown table of medians with the imgrelay/nginx ratio.
#
#   benches/load.sh                  # whole run (a few minutes)
#   LOAD_ROUNDS=5 benches/load.sh    # more rounds
#   LOAD_ONLY=nginx benches/load.sh  # the nginx half alone (no imgrelay build)
#   LOAD_SCENARIOS=hit benches/load.sh  # the hit scenario alone
#
# Environment: LOAD_ROUNDS (3), LOAD_HIT_SECONDS (8), LOAD_MISS_SECONDS (6), LOAD_MISS_CONNECTIONS (8),
# LOAD_ONLY (imgrelay|nginx), LOAD_SCENARIOS (hit,miss), LOAD_KEEP=1 keeps the temp dir, LOAD_OUT=FILE also writes the report there,
# LOAD_BIN=PATH uses that imgrelay binary instead of `cargo build --release`, LOAD_IMGRELAY_ENV="VAR=VALUE …"
# sets environment variables for the imgrelay process.
#
# Scenarios (each server in alternation, imgrelay then nginx, LOAD_ROUNDS rounds, medians reported):
#   hit   one resized URL (640x422 source, fit 320x211) again and again, wrk -t2 -c64 --latency
#   miss  every request a distinct variant (box Wx480 or 640xH, distinct source query strings) of the
#         1280x960 and the 4000x3000 JPEG; CPU per image from /proc/<pid>/stat of the server processes
#   memory peak RSS (VmHWM) after the miss scenarios
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=load
# shellcheck source=benches/load/common.sh
source "$ROOT/benches/load/common.sh"
ROUNDS=${LOAD_ROUNDS:-3}
HIT_SECONDS=${LOAD_HIT_SECONDS:-8}
MISS_SECONDS=${LOAD_MISS_SECONDS:-6}
HIT_CONNECTIONS=64
MISS_CONNECTIONS=${LOAD_MISS_CONNECTIONS:-8}
ONLY=${LOAD_ONLY:-}
SCENARIOS=${LOAD_SCENARIOS:-hit,miss}
COMMAND="$0${*:+ $*}"
for v in LOAD_ROUNDS LOAD_HIT_SECONDS LOAD_MISS_SECONDS LOAD_MISS_CONNECTIONS LOAD_ONLY LOAD_SCENARIOS \
    LOAD_BIN LOAD_IMGRELAY_ENV; do
    [[ -n "${!v:-}" ]] && COMMAND="$v=\"${!v}\" $COMMAND"
done

run_imgrelay() { [[ "$ONLY" != nginx ]]; }
scenario() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
run_nginx() { [[ "$ONLY" != imgrelay ]]; }

bench_setup
[[ -n "$IMAGE_FILTER" ]] || { log "nginx image_filter module not found"; exit 1; }
run_imgrelay && build_imgrelay
start_origin
read -r RESIZE_PORT NGINX_PORT < <("${HELPER[@]}" ports 2)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

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

# LOAD_IMGRELAY_ENV: extra VAR=VALUE words for the imgrelay process (e.g. allocator settings).
read -r -a IMGRELAY_ENV <<<"${LOAD_IMGRELAY_ENV:-}"
run_imgrelay && start_imgrelay imgrelay "${IMGRELAY_ENV[@]}"

# --- URLs ------------------------------------------------------------------------------------------
HIT_SRC=photo-640x422.jpg
MISS_SOURCES=(photo-1280x960.jpg photo-4000x3000.jpg)
NGINX_HIT="/img/320x211/$HIT_SRC"
if run_imgrelay; then
    IMGRELAY_HIT=$(sign_path 320x211 "http://$ORIGIN_HOST/$HIT_SRC")
fi
# 420 boxes x PER_BOX query strings per source: distinct URLs for every miss request of every round,
# sized for up to 1500 misses/s (several times what two cores give).
PER_BOX=${LOAD_PER_BOX:-$(( (ROUNDS * MISS_SECONDS * 1500 + 419) / 420 + 1 ))}
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

# EXIF orientation: orient-6.jpg is stored 240x360 and displayed 360x240; fit in 180x180.
declare -A ORIENTED
for s in "${SERVERS[@]}"; do
    if [[ $s == imgrelay ]]; then
        path=$(sign_path 180x180 "http://$ORIGIN_HOST/orient-6.jpg")
    else
        path=/img/180x180/orient-6.jpg
    fi
    ORIENTED[$s]=$("${HELPER[@]}" probe "$(port_of "$s")" "$path" |
        python3 -c 'import json,sys; s=json.load(sys.stdin)["size"]; print(f"{s[0]}x{s[1]}" if s else "none")')
done

# --- scenarios -------------------------------------------------------------------------------------
HIT_LABEL="hit: 640x422 → fit 320x211, ${HIT_CONNECTIONS} conn"
scenario hit && for round in $(seq "$ROUNDS"); do
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

scenario miss && for src in "${MISS_SOURCES[@]}"; do
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
if run_imgrelay && scenario miss; then
    "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "peak RSS MB" imgrelay \
        "$(( $("${HELPER[@]}" hwm "$IMGRELAY_PID") / 1024 ))"
    # What the in-memory caches hold by then (nginx keeps its cache on disk, outside its RSS).
    cached=$("${HELPER[@]}" get "$IMGRELAY_ADMIN_PORT" /_imgrelay/metrics |
        awk '/^imgrelay_cache_bytes\{/ { sum += $2 } END { printf "%d", sum / 1048576 }')
    "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "cache contents MB (variants + sources)" imgrelay "$cached"
    # Where the rest sits: live allocations against what the allocator keeps after frees.
    metrics=$("${HELPER[@]}" get "$IMGRELAY_ADMIN_PORT" /_imgrelay/metrics)
    for state in in_use free mapped; do
        mb=$(awk -v s="imgrelay_heap_bytes{state=\"$state\"}" '$1 == s { printf "%d", $2 / 1048576 }' <<<"$metrics")
        [[ -n "$mb" ]] && "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "heap $state MB (allocator, at the end)" imgrelay "$mb"
    done
fi
if run_nginx && scenario miss; then
    "${HELPER[@]}" record "$RESULTS" "$MEM_LABEL" "peak RSS MB" nginx \
        "$(( $("${HELPER[@]}" hwm "${NGINX_WORKERS[@]}") / 1024 ))"
fi

# --- report ----------------------------------------------------------------------------------------
report() {
    echo "## imgrelay vs nginx image_filter + proxy_cache"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_line)"
    echo "- command: \`$COMMAND\`"
    local versions=()
    if run_imgrelay; then versions+=("$("$BIN" --version)"); fi
    # `wrk -v` exits 1 after printing its version.
    versions+=("$(nginx -v 2>&1 | sed 's/^nginx version: //')" "$({ wrk -v 2>&1 || true; } | head -1 | awk '{print $1, $2}')")
    versions+=("commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)")
    echo "- versions: $(join_by ", " "${versions[@]}")"
    echo "- rounds: $ROUNDS per scenario, servers alternating (imgrelay, nginx, imgrelay, nginx, …); hit ${HIT_SECONDS}s per run, miss ${MISS_SECONDS}s per run"
    echo
    "${HELPER[@]}" table "$RESULTS"
    echo
    local oriented=()
    for s in "${SERVERS[@]}"; do oriented+=("$s ${ORIENTED[$s]}"); done
    echo "EXIF orientation (orient-6.jpg: stored 240x360, displayed 360x240; fit 180x180, correct: 180x120):"
    echo "$(join_by ", " "${oriented[@]}")."
    echo
    echo "Notes: hit latencies and req/s from \`wrk -t2 -c$HIT_CONNECTIONS --latency\` (client on the same 2 cores)."
    echo "Miss: each request a distinct URL (box Wx480 for W in 400..639 or 640xH for H in 300..479, times"
    echo "distinct source query strings), checked 200, a cache MISS, and fitting its box; a fixed-duration run whose"
    echo "in-flight requests are all awaited, so CPU ms per image = (utime+stime after − before) / images served."
    echo "imgrelay: one process (\`cache.memory_mb = 256\`, \`cache.source_memory_mb = 64\`, quality 80; each source"
    echo "is fetched once and its sizes come from the source cache). nginx: CPU of master + workers + cache manager,"
    echo "peak RSS = sum of the worker processes' VmHWM; image_filter_jpeg_quality 80; the resize block fetches the"
    echo "source from the origin for every variant (the typical recipe). The origin (a separate nginx, static files)"
    echo "is counted for neither. imgrelay's caches live in its memory (their contents are shown), nginx's"
    echo "proxy_cache on disk (page cache, not in its RSS)."
}
if [[ -n "${LOAD_OUT:-}" ]]; then
    report | tee "$LOAD_OUT"
else
    report
fi
