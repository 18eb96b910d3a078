# `make run` serves with ./config.toml; `make test` runs every check CI runs.
# Both install missing build prerequisites first (libjpeg-turbo's build needs cmake and nasm).

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BUILD_TOOLS := cmake nasm pkg-config
# Debian packages whose presence is checked with dpkg rather than by a command name.
BUILD_LIBS := libdav1d-dev
# redis-server brings redis-cli (redis-tools) with it.
TEST_TOOLS := nginx redis-server chromium

define apt_install_missing
	@missing=""; for t in $(1); do command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

define apt_install_missing_pkgs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

.PHONY: deps test-deps run test bench
deps:
	$(call apt_install_missing,$(BUILD_TOOLS))
	$(call apt_install_missing_pkgs,$(BUILD_LIBS))

test-deps: deps
	$(call apt_install_missing,$(TEST_TOOLS))

run: deps
	cargo run --release -- serve --config config.toml

test: test-deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test --all-targets

bench: deps
	cargo bench --bench rewrite --bench pipeline
