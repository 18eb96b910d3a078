# Multi-stage build: the builder installs the same prerequisites `make` does (cmake, nasm) and builds the
# release binary; the runtime image carries only the binary, CA roots and a non-root user.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Makefile ./
RUN make deps
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin imgrelay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libdav1d6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/imgrelay --create-home imgrelay
COPY --from=builder /src/target/release/imgrelay /usr/local/bin/imgrelay
COPY config.toml /etc/imgrelay/config.toml
# The signing key lives on the volume so published URLs stay valid across container upgrades.
ENV IMGRELAY_SERVER__LISTEN=0.0.0.0:8080 \
    IMGRELAY_SIGNING__KEY_FILE=/var/lib/imgrelay/imgrelay.key
VOLUME ["/var/lib/imgrelay"]
USER imgrelay
WORKDIR /var/lib/imgrelay
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /_imgrelay/healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["imgrelay"]
CMD ["serve", "--config", "/etc/imgrelay/config.toml"]
