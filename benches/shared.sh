#!/usr/bin/env bash
# The shared Redis tier, in one run on one machine (everything on 127.0.0.1):
#   spread   1, 2 and 3 instances on one Redis; 30 distinct images, each asked from every instance
#            in turn: upstream fetches and transforms per distinct image (the origin's own count too)
#   hits     one variant again and again (wrk -t2 -c16): from the memory tier, and from the Redis tier
#            (an instance with no memory for variants, so every request reads Redis): req/s, p50, p99
#   memory   RSS of each of the 3 instances and Redis's used_memory after the spread run
#
#   benches/shared.sh
#
# Environment: SHARED_IMAGES (30), SHARED_HIT_SECONDS (8), SHARED_ROUNDS (3, hit rounds alternate
# memory and Redis), LOAD_KEEP=1 keeps the temp dir, LOAD_BIN=PATH uses that imgrelay binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=shared
# shellcheck source=benches/load/common.sh
source "$ROOT/benches/load/common.sh"
IMAGES_N=${SHARED_IMAGES:-30}
HIT_SECONDS=${SHARED_HIT_SECONDS:-8}
ROUNDS=${SHARED_ROUNDS:-3}

command -v redis-server >/dev/null || {
    sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y -qq redis-server >&2
}
bench_setup
build_imgrelay
start_origin

read -r REDIS_PORT < <("${HELPER[@]}" ports 1)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 </dev/null &
STARTED+=($!)
"${HELPER[@]}" wait "$REDIS_PORT" || { log "redis did not start"; exit 1; }
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

metric() { curl -s "http://127.0.0.1:$1/_imgrelay/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

PORTS=() ADMINS=() PIDS=()
start_instances() {
    PORTS=() ADMINS=() PIDS=()
    local i
    for i in $(seq "$1"); do
        start_imgrelay "instance$i" IMGRELAY_SHARED_CACHE__URL="$REDIS_URL" "${@:2}"
        PORTS+=("$IMGRELAY_PORT") ADMINS+=("$IMGRELAY_ADMIN_PORT") PIDS+=("$IMGRELAY_PID")
    done
}
stop_instances() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

REPORT="$WORK/report.md"
{
    echo "Machine: $(machine_line); $(date -u +%Y-%m-%d); $(redis-server --version | awk '{print $1, $2, $3}')"
    echo
    echo "| instances | requests | upstream fetches | transforms | per distinct image (fetch / transform) | Redis hits (variants) |"
    echo "|---:|---:|---:|---:|---:|---:|"
} >"$REPORT"

for n in 1 2 3; do
    rcli FLUSHALL >/dev/null
    start_instances "$n"
    for i in $(seq "$IMAGES_N"); do
        path=$(sign_path 320x0 "http://$ORIGIN_HOST/photo-640x422.jpg?spread=$n-$i")
        for port in "${PORTS[@]}"; do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")
            [[ "$code" == 200 ]] || { log "instance on $port answered $code"; exit 1; }
        done
    done
    fetches=0 transforms=0 hits=0
    for a in "${ADMINS[@]}"; do
        fetches=$((fetches + $(metric "$a" imgrelay_upstream_fetches_total)))
        transforms=$((transforms + $(metric "$a" imgrelay_transforms_total)))
        hits=$((hits + $(metric "$a" 'imgrelay_shared_cache_lookups_total{tier="variants",result="hit"}')))
    done
    per=$(python3 -c "print(f'{$fetches/$IMAGES_N:.2f} / {$transforms/$IMAGES_N:.2f}')")
    echo "| $n | $((n * IMAGES_N)) | $fetches | $transforms | $per | $hits |" >>"$REPORT"
    if [[ "$n" == 3 ]]; then
        {
            echo
            echo "After the 3-instance run: RSS $(for p in "${PIDS[@]}"; do echo -n "$(($(awk '/VmRSS/ {print $2}' "/proc/$p/status") / 1024)) MiB "; done)per instance;" \
                "Redis used_memory $(($(rcli INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r') / 1024)) KiB for $(rcli DBSIZE) keys."
        } >>"$REPORT"
    fi
    stop_instances
done

# --- hits: memory tier against Redis tier ---------------------------------------------------------
RESULTS="$WORK/hits.tsv"
: >"$RESULTS"
start_instances 1
MEM_PORT=${PORTS[0]} MEM_PIDS=("${PIDS[@]}")
start_instances 1 IMGRELAY_CACHE__MEMORY_MB=0
REDIS_TIER_PORT=${PORTS[0]}
PIDS+=("${MEM_PIDS[@]}")
HIT_PATH=$(sign_path 320x0 "http://$ORIGIN_HOST/photo-640x422.jpg?hit=1")
for port in "$MEM_PORT" "$REDIS_TIER_PORT"; do
    curl -s -o /dev/null "http://127.0.0.1:$port$HIT_PATH"
done
for round in $(seq "$ROUNDS"); do
    for tier in memory redis; do
        port=$MEM_PORT
        [[ "$tier" == redis ]] && port=$REDIS_TIER_PORT
        wrk -t2 -c16 -d"${HIT_SECONDS}s" --latency "http://127.0.0.1:$port$HIT_PATH" >"$WORK/wrk-$tier-$round.txt"
        "${HELPER[@]}" wrk "$WORK/wrk-$tier-$round.txt" --record "$RESULTS" --scenario hit --server "$tier" >/dev/null
    done
done
{
    echo
    echo "Hits, wrk -t2 -c16, ${HIT_SECONDS} s x $ROUNDS rounds alternating (medians):"
    echo
    python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    scenario, name, server, value = line.rstrip("\n").split("\t")
    rows.setdefault((server, name), []).append(float(value))
print("| tier | req/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
for server in ("memory", "redis"):
    cells = [statistics.median(rows[(server, n)]) for n in ("req/s", "p50 ms", "p99 ms")]
    print(f"| {server} | {cells[0]:,.0f} | {cells[1]:.2f} | {cells[2]:.2f} |")
m = statistics.median(rows[("memory", "req/s")]); r = statistics.median(rows[("redis", "req/s")])
print(f"\nRedis tier / memory tier req/s: {r / m:.2f}x")
PY
} >>"$REPORT"
stop_instances
cat "$REPORT"
