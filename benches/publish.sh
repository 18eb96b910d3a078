#!/usr/bin/env bash
# Publish-time probing and warm-up, in one run on one machine (everything on 127.0.0.1): a corpus of
# Hexo posts whose pictures are distinct URLs on a local static origin, deploy/nginx-static.conf in
# front of one imgrelay, and a first reader of every post (benches/publish/reader.py: each post's
# <img src> fetched as a browser does, time to the last image byte).
#
#   probe   `rewrite --probe` over the corpus with an empty probe cache, then again with the cache:
#           seconds, pictures, upstream requests (the summary line)
#   reader  the first reader after `rewrite` alone, and after `rewrite --warm` (each on a fresh
#           imgrelay and a fresh nginx cache): median / p90 / max per post, nginx cache statuses
#
#   benches/publish.sh
#
# Environment: PUBLISH_POSTS (32), PUBLISH_IMAGES (6 per post), LOAD_KEEP=1 keeps the temp dir,
# LOAD_BIN=PATH uses that imgrelay binary instead of `cargo build --release`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=publish
# shellcheck source=benches/load/common.sh
source "$ROOT/benches/load/common.sh"
POSTS=${PUBLISH_POSTS:-32}
PER_POST=${PUBLISH_IMAGES:-6}
READER=(python3 "$ROOT/benches/publish/reader.py")

bench_setup
build_imgrelay
start_origin
"${READER[@]}" posts --out "$WORK/posts" --host "$ORIGIN_HOST" --posts "$POSTS" --images "$PER_POST" >"$WORK/corpus.json"
log "corpus: $(cat "$WORK/corpus.json")"

# deploy/nginx-static.conf as shipped, with its paths and ports moved into the temp dir.
start_front() {
    local name=$1 dir="$WORK/$1"
    mkdir -p "$dir/log" "$dir/cache" "$dir/public" "$dir/tmp"
    chmod 777 "$dir" "$dir/cache" "$dir/public"
    cp /etc/nginx/mime.types "$dir/mime.types"
    read -r FRONT_PORT < <("${HELPER[@]}" ports 1)
    sed -e "s|listen 127.0.0.1:8081;|listen 127.0.0.1:$FRONT_PORT;|" \
        -e "s|server 127.0.0.1:8080;|server 127.0.0.1:$IMGRELAY_PORT;|" \
        -e "s|/run/nginx-imgrelay.pid|$dir/nginx.pid|" \
        -e "s|/var/log/nginx/|$dir/log/|g" \
        -e "s|/var/cache/nginx/|$dir/cache/|g" \
        -e "s|/var/www/blog/public|$dir/public|" \
        "$ROOT/deploy/nginx-static.conf" >"$dir/nginx.conf"
    [[ -z "$NGINX_USER" ]] || sed -i "1i $NGINX_USER" "$dir/nginx.conf"
    start_nginx "$dir"
    "${HELPER[@]}" wait "$FRONT_PORT" || { log "nginx did not start"; cat "$dir/error.log" >&2; exit 1; }
}

summary_of() { grep -o 'probed .*' "$1" | head -1; }

# --- probe ---------------------------------------------------------------------------------------
write_imgrelay_config probe 0
for run in empty kept; do
    rm -rf "$WORK/probed" && mkdir -p "$WORK/probed"
    [[ "$run" == empty ]] && rm -f "$WORK/probes.json"
    start=$(date +%s.%N)
    "$BIN" rewrite --config "$IMGRELAY_CONFIG" --probe --probe-cache "$WORK/probes.json" \
        --out "$WORK/probed" "$WORK"/posts/*.md 2>"$WORK/probe-$run.log"
    end=$(date +%s.%N)
    printf 'probe, cache %s: %.2f s wall; %s\n' "$run" "$(echo "$end - $start" | bc)" "$(summary_of "$WORK/probe-$run.log")"
done

# --- first reader ----------------------------------------------------------------------------------
for mode in cold warm; do
    start_imgrelay "reader-$mode"
    start_front "front-$mode"
    rm -rf "$WORK/out-$mode" && mkdir -p "$WORK/out-$mode"
    warm=()
    [[ "$mode" == warm ]] && warm=(--warm "http://127.0.0.1:$FRONT_PORT")
    start=$(date +%s.%N)
    "$BIN" rewrite --config "$IMGRELAY_CONFIG" "${warm[@]}" --out "$WORK/out-$mode" "$WORK"/posts/*.md \
        2>"$WORK/rewrite-$mode.log"
    end=$(date +%s.%N)
    printf 'rewrite%s: %.2f s wall %s\n' "${warm:+ --warm}" "$(echo "$end - $start" | bc)" \
        "$(grep -o 'warmed .*' "$WORK/rewrite-$mode.log" || true)"
    printf 'first reader after rewrite%s: %s\n' "${warm:+ --warm}" \
        "$("${READER[@]}" read --port "$FRONT_PORT" "$WORK/out-$mode")"
    kill "$IMGRELAY_PID"
done
log "machine: $(machine_line)"
