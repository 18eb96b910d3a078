# shellcheck shell=bash
# Shared by benches/load.sh and benches/scaling.sh (sourced, not run): tools, test images, the release
# build, a temp dir whose processes are all stopped on exit, a static origin, imgrelay instances.
#
# The sourcing script sets ROOT and LOG_TAG first, then calls bench_setup.

HELPER=(python3 "$ROOT/benches/load/helper.py")
ORIGIN_HOST=img.origin.example
IMAGES="$ROOT/tests/data/images"
# LOAD_BIN: an imgrelay binary to use instead of building target/release/imgrelay.
BIN="${LOAD_BIN:-$ROOT/target/release/imgrelay}"

# join_by SEP WORD...: the words separated by SEP.
join_by() {
    local sep=$1 out=$2
    shift 2
    for w in "$@"; do out+="$sep$w"; done
    echo "$out"
}

log() { printf '[%s] %s\n' "${LOG_TAG:-bench}" "$*" >&2; }

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

# apt-get only what is missing: python3, wrk, nginx with its image_filter module (and ImageMagick when
# the test images have to be drawn).
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

# The repository ships the photos; a checkout without them gets drawn ones of the same sizes.
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

build_imgrelay() {
    [[ -z "${LOAD_BIN:-}" ]] || return 0
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet --bin imgrelay)
}

# --- processes -------------------------------------------------------------------------------------
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

bench_setup() {
    install_missing
    ensure_images
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgrelay-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    NGINX_USER=""
    [[ "$(id -u)" -eq 0 ]] && NGINX_USER="user root root;"
    IMAGE_FILTER=$(find_image_filter)
    LOAD_MODULE=""
    [[ -z "$IMAGE_FILTER" || "$IMAGE_FILTER" == static ]] || LOAD_MODULE="load_module $IMAGE_FILTER;"
}

# Head of an nginx config: everything under `dir`, no access log; the caller closes the http block.
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

# Starts nginx (daemon off) as a child of this script from `dir/nginx.conf`; master pid in STARTED_PID.
start_nginx() {
    local dir=$1
    mkdir -p "$dir/tmp"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >&2
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 </dev/null &
    STARTED_PID=$!
    STARTED+=("$STARTED_PID")
}

# The origin: static files of tests/data/images, one worker (query strings ignored, so `x.jpg?k=1`
# and `x.jpg?k=2` are two URLs of the same bytes). Its CPU is counted for no server. Sets ORIGIN_PORT.
start_origin() {
    read -r ORIGIN_PORT < <("${HELPER[@]}" ports 1)
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
}

# write_imgrelay_config NAME PORT [ADMIN_PORT]: a config for `imgrelay serve|sign|rewrite` with the
# origin pinned as http://img.origin.example/ and one key shared by every instance; the control plane
# (metrics) on ADMIN_PORT (default: any free port). Sets IMGRELAY_CONFIG and SIGN (the signing command,
# without --size).
write_imgrelay_config() {
    local name=$1 port=$2 admin_port=${3:-0}
    if [[ ! -f "$WORK/imgrelay.key" ]]; then
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/imgrelay.key"
        chmod 600 "$WORK/imgrelay.key"
    fi
    IMGRELAY_CONFIG="$WORK/$name.toml"
    cat >"$IMGRELAY_CONFIG" <<EOF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"
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

# The default: one access line per request, as a deployment runs it.
[log]
level = "info"
EOF
    SIGN="$BIN sign --config $IMGRELAY_CONFIG"
}

# start_imgrelay NAME [VAR=VALUE...]: an `imgrelay serve` on a free port (see write_imgrelay_config);
# environment overrides (IMGRELAY_*) as extra words. Sets IMGRELAY_PORT, IMGRELAY_ADMIN_PORT (control
# plane: metrics), IMGRELAY_PID, IMGRELAY_CONFIG, SIGN.
start_imgrelay() {
    local name=$1
    shift
    read -r IMGRELAY_PORT IMGRELAY_ADMIN_PORT < <("${HELPER[@]}" ports 2)
    write_imgrelay_config "$name" "$IMGRELAY_PORT" "$IMGRELAY_ADMIN_PORT"
    env "$@" "$BIN" serve --config "$IMGRELAY_CONFIG" >"$WORK/$name.log" 2>&1 </dev/null &
    IMGRELAY_PID=$!
    STARTED+=("$IMGRELAY_PID")
    if ! "${HELPER[@]}" wait "$IMGRELAY_PORT"; then
        log "imgrelay did not start"
        cat "$WORK/$name.log" >&2
        exit 1
    fi
}

# sign_path SIZE URL: the proxied path of one URL (`sign` prints an absolute URL when public_prefix is one).
sign_path() {
    local out
    out=$(echo "$2" | $SIGN --size "$1")
    [[ "$out" == *://* ]] && out=/${out#*://*/}
    echo "$out"
}

machine_line() {
    echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
}
