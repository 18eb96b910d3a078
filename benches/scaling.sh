#!/usr/bin/env bash
# How imgrelay's cost grows with its work, in one run on one machine (everything on 127.0.0.1):
#   rewrite   `imgrelay rewrite` over 1, 10 and 100 MiB HTML documents (the posts' bodies repeated):
#             MB/s and peak RSS, reading stdin and reading a file
#   hit       cache-hit latency with 1 thousand vs 100 thousand variants cached (two instances, each
#             filled with 1x1 PNG variants of distinct source URLs; wrk requests random cached keys)
#   workers   miss throughput with 1 vs 2 transform workers (IMGRELAY_IMAGE__MAX_CONCURRENCY)
# Instances alternate (A B A B …) for SCALING_ROUNDS rounds; medians are printed as markdown tables.
#
#   benches/scaling.sh
#   SCALING_DOC_MB="1 10" SCALING_LARGE_ENTRIES=20000 benches/scaling.sh   # a quicker run
#
# Environment: SCALING_ROUNDS (3), SCALING_DOC_MB ("1 10 100"), SCALING_SMALL_ENTRIES (1000),
# SCALING_LARGE_ENTRIES (100000), SCALING_HIT_SECONDS (6), SCALING_MISS_SECONDS (5), SCALING_ONLY
# (rewrite|hit|workers, space-separated), LOAD_KEEP=1 keeps the temp dir, SCALING_OUT=FILE also writes
# the report there, LOAD_BIN=PATH uses that imgrelay binary instead of `cargo build --release`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=scaling
# shellcheck source=benches/load/common.sh
source "$ROOT/benches/load/common.sh"
ROUNDS=${SCALING_ROUNDS:-3}
DOC_MB=${SCALING_DOC_MB:-"1 10 100"}
SMALL=${SCALING_SMALL_ENTRIES:-1000}
LARGE=${SCALING_LARGE_ENTRIES:-100000}
HIT_SECONDS=${SCALING_HIT_SECONDS:-6}
MISS_SECONDS=${SCALING_MISS_SECONDS:-5}
ONLY=${SCALING_ONLY:-"rewrite hit workers"}
COMMAND="$0${*:+ $*}"
for v in SCALING_ROUNDS SCALING_DOC_MB SCALING_SMALL_ENTRIES SCALING_LARGE_ENTRIES SCALING_HIT_SECONDS \
    SCALING_MISS_SECONDS SCALING_ONLY LOAD_BIN; do
    [[ -n "${!v:-}" ]] && COMMAND="$v=\"${!v}\" $COMMAND"
done
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

bench_setup
build_imgrelay
start_origin
REPORT="$WORK/report.md"
: >"$REPORT"

# --- rewrite ---------------------------------------------------------------------------------------
if wanted rewrite; then
    RES="$WORK/rewrite.tsv"
    : >"$RES"
    write_imgrelay_config rewrite 0
    REWRITE_CONFIG=$IMGRELAY_CONFIG
    for mb in $DOC_MB; do
        info=$("${HELPER[@]}" document --posts "$ROOT/tests/data/articles/posts" --mb "$mb" --out "$WORK/doc-$mb.html")
        log "document ${mb} MiB: $info"
    done
    first=${DOC_MB%% *}
    rewritten=$("$BIN" rewrite --config "$REWRITE_CONFIG" <"$WORK/doc-$first.html" | grep -o 'src="/img/' | wc -l)
    log "rewrite sanity: $rewritten src attributes now point at /img/ in the ${first} MiB document"
    ((rewritten > 0)) || { log "rewrite changed no image URL"; exit 1; }
    for round in $(seq "$ROUNDS"); do
        for mb in $DOC_MB; do
            doc="$WORK/doc-$mb.html"
            bytes=$(stat -c %s "$doc")
            for mode in stdin file; do
                if [[ $mode == stdin ]]; then
                    out=$("${HELPER[@]}" measure --stdin "$doc" -- "$BIN" rewrite --config "$REWRITE_CONFIG")
                else
                    out=$("${HELPER[@]}" measure -- "$BIN" rewrite --config "$REWRITE_CONFIG" "$doc")
                fi
                wall=$(json_field "$out" wall_s)
                "${HELPER[@]}" record "$RES" "rewrite ($mode)" "MB/s" "$mb MiB" \
                    "$(python3 -c 'import sys; print(int(sys.argv[1]) / 1048576 / float(sys.argv[2]))' "$bytes" "$wall")"
                "${HELPER[@]}" record "$RES" "rewrite ($mode)" "CPU ms per MiB" "$mb MiB" \
                    "$(python3 -c 'import sys; print(float(sys.argv[1]) * 1000 / (int(sys.argv[2]) / 1048576))' "$(json_field "$out" cpu_s)" "$bytes")"
                "${HELPER[@]}" record "$RES" "rewrite ($mode)" "peak RSS MB" "$mb MiB" "$(json_field "$out" peak_rss_mb)"
                log "rewrite round $round ${mb} MiB ($mode): $out"
            done
        done
    done
    columns=()
    for mb in $DOC_MB; do columns+=("$mb MiB"); done
    {
        echo "### imgrelay rewrite: throughput and memory against document size"
        echo
        "${HELPER[@]}" table "$RES" "${columns[@]}"
        echo
        echo "Documents: the posts' bodies (tests/data/articles/posts, front matter removed) repeated inside one"
        echo "HTML page; stdout discarded. Peak RSS = VmHWM polled every 2 ms."
        echo
    } >>"$REPORT"
fi

# --- cache-hit latency against the number of cached entries ---------------------------------------
if wanted hit; then
    RES="$WORK/hit.tsv"
    : >"$RES"
    start_imgrelay hit-small
    SMALL_PORT=$IMGRELAY_PORT
    SMALL_ADMIN=$IMGRELAY_ADMIN_PORT
    SMALL_PID=$IMGRELAY_PID
    start_imgrelay hit-large
    LARGE_PORT=$IMGRELAY_PORT
    LARGE_ADMIN=$IMGRELAY_ADMIN_PORT
    LARGE_PID=$IMGRELAY_PID
    log "signing $LARGE pixel URLs"
    seq 0 $((LARGE - 1)) | sed "s|^|http://$ORIGIN_HOST/pixel-1x1.png?n=|" | $SIGN --size 1x1 |
        sed 's|^[a-z]*://[^/]*||' >"$WORK/pixels.txt"
    [[ $(wc -l <"$WORK/pixels.txt") -eq $LARGE ]] || { log "sign printed a wrong number of lines"; exit 1; }
    sed 's|^|1 1 |' "$WORK/pixels.txt" >"$WORK/pixels-boxed.txt"
    head -n "$SMALL" "$WORK/pixels-boxed.txt" >"$WORK/pixels-small.txt"
    for spec in "small:$SMALL_PORT:$WORK/pixels-small.txt" "large:$LARGE_PORT:$WORK/pixels-boxed.txt"; do
        IFS=: read -r name port list <<<"$spec"
        t0=$(date +%s)
        out=$("${HELPER[@]}" miss --port "$port" --urls "$list" --duration 600 --concurrency 8 --no-size-check)
        log "filled $name ($(($(date +%s) - t0)) s): $out"
        [[ $(json_field "$out" errors) -eq 0 ]] || { log "errors while filling"; exit 1; }
    done
    for spec in "$SMALL entries:$SMALL_PORT:$SMALL_PID:$SMALL:$SMALL_ADMIN" "$LARGE entries:$LARGE_PORT:$LARGE_PID:$LARGE:$LARGE_ADMIN"; do
        IFS=: read -r name port pid count admin <<<"$spec"
        # Every key of the set must now be a hit: probe the first and the last.
        for path in "$(head -n 1 "$WORK/pixels.txt")" "$(sed -n "${count}p" "$WORK/pixels.txt")"; do
            cache=$(json_field "$("${HELPER[@]}" probe "$port" "$path")" cache)
            [[ $cache == HIT ]] || { log "$name: $path is not cached ($cache)"; exit 1; }
        done
        "${HELPER[@]}" get "$admin" /_imgrelay/metrics | grep -E '^imgrelay_cache_[a-z_]+\{cache="variants"\}' |
            sed "s/^/[scaling] $name: /" >&2 || true
        "${HELPER[@]}" record "$RES" "after filling" "RSS MB" "$name" "$(($("${HELPER[@]}" rss "$pid") / 1024))"
    done
    for round in $(seq "$ROUNDS"); do
        for spec in "$SMALL entries:$SMALL_PORT:$SMALL" "$LARGE entries:$LARGE_PORT:$LARGE"; do
            IFS=: read -r name port count <<<"$spec"
            wrk -t2 -c64 -d"${HIT_SECONDS}s" --latency -s "$ROOT/benches/load/random.lua" \
                "http://127.0.0.1:$port" -- "$WORK/pixels.txt" "$count" >"$WORK/wrk-hit-$round-$count.txt"
            out=$("${HELPER[@]}" wrk "$WORK/wrk-hit-$round-$count.txt" --record "$RES" \
                --scenario "hit, random cached key, 64 conn" --server "$name")
            log "hit round $round, $name: $out"
        done
    done
    {
        echo "### imgrelay cache hits: latency against the number of cached variants"
        echo
        "${HELPER[@]}" table "$RES" "$LARGE entries" "$SMALL entries"
        echo
        echo "Two instances, one filled with $SMALL and one with $LARGE variants (1x1 PNG sources at distinct URLs"
        echo "\`pixel-1x1.png?n=N\`, signed with \`--size 1x1\`); wrk picks a random cached key for every request."
        echo
    } >>"$REPORT"
fi

# --- miss throughput against transform workers -----------------------------------------------------
if wanted workers; then
    RES="$WORK/workers.tsv"
    : >"$RES"
    SRC=photo-1280x960.jpg
    declare -A PORT PID
    for w in 1 2; do
        start_imgrelay "workers-$w" IMGRELAY_IMAGE__MAX_CONCURRENCY=$w
        PORT[$w]=$IMGRELAY_PORT
        PID[$w]=$IMGRELAY_PID
    done
    log "preparing miss URL list"
    "${HELPER[@]}" variants --out "$WORK/urls" --sources "$SRC" --host "$ORIGIN_HOST" --per-box 16 --sign "$SIGN"
    list="$WORK/urls/imgrelay-$SRC.txt"
    read -r bw bh path < <(head -n 1 "$list")
    for w in 1 2; do
        "${HELPER[@]}" probe "${PORT[$w]}" "$path" "$bw" "$bh" >/dev/null
        echo 1 >"$WORK/offset-workers-$w"
    done
    label="miss: ${SRC#photo-} → fit ≤640x480, 8 conn"
    label=${label/.jpg/}
    for round in $(seq "$ROUNDS"); do
        for w in 1 2; do
            name="$w worker"
            [[ $w -gt 1 ]] && name="$w workers"
            out=$("${HELPER[@]}" miss --port "${PORT[$w]}" --urls "$list" --offset-file "$WORK/offset-workers-$w" \
                --duration "$MISS_SECONDS" --concurrency 8 --pids "${PID[$w]}" \
                --record "$RES" --scenario "$label" --server "$name")
            log "workers round $round, $name: $out"
        done
    done
    {
        echo "### imgrelay misses: throughput against transform workers"
        echo
        "${HELPER[@]}" table "$RES" "2 workers" "1 worker"
        echo
        echo "Two instances, \`IMGRELAY_IMAGE__MAX_CONCURRENCY\` = 1 and 2; every request a distinct variant."
        echo
    } >>"$REPORT"
fi

# --- report ----------------------------------------------------------------------------------------
{
    echo "## imgrelay scaling figures"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_line)"
    echo "- command: \`$COMMAND\`"
    echo "- versions: $("$BIN" --version), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- rounds: $ROUNDS, instances alternating; medians"
    echo
    cat "$REPORT"
} >"$WORK/full-report.md"
if [[ -n "${SCALING_OUT:-}" ]]; then
    tee "$SCALING_OUT" <"$WORK/full-report.md"
else
    cat "$WORK/full-report.md"
fi
