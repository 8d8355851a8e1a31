#!/usr/bin/env bash
# README command 2: installs what the tests need, starts the real services (a Kafka-protocol
# broker, Mosquitto, PostgreSQL, PostgreSQL with TimescaleDB (built once from its source
# tarball when no package has it), headless Chromium for the page test, a Python Open311
# client, exiftool for photo metadata, oidc-provider from npm for single sign-on) and runs every
# test.
# Tests that need a service fail with a message naming it if it is missing; none skip.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_build_deps
cd "$IOC_ROOT"
trap stop_services EXIT
start_kafka
start_mqtt
start_postgres
start_timescaledb
start_chromium
ensure_test_tools
start_python_client
start_oidc_provider
# The Debian package and a fresh Debian 12 root to install it into (tests/package.rs): the
# package holds the binary the tests themselves build (built here once, with their features).
log "cargo build --workspace --tests (the tests' build, packaged below)"
cargo build --workspace --tests --locked || die "the workspace does not build"
IOC_PACKAGE_PROFILE=dev IOC_PACKAGE_PREBUILT=1 build_package
make_debian_root
# Formatting is part of the build: an unformatted change fails here, naming the files.
log "cargo fmt --all -- --check"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing (rustup component add rustfmt)"
cargo fmt --all -- --check >"$IOC_RUN_DIR/fmt.log" 2>&1 \
  || die "unformatted code: run cargo fmt --all ($(grep -c '^Diff in' "$IOC_RUN_DIR/fmt.log") places, log: $IOC_RUN_DIR/fmt.log)"
log "services: kafka=$IOC_TEST_KAFKA mqtt=$IOC_TEST_MQTT postgres=$IOC_TEST_DATABASE_URL timescaledb=$IOC_TEST_TIMESCALE_URL (server binaries $IOC_TEST_PG_BIN) chromium=$IOC_TEST_CHROMIUM"
# The API builds without GStreamer: it reaches camera images through the media crate.
log "map-api without GStreamer: cargo build -p map-api, with pkg-config blind to GStreamer"
if cargo tree -p map-api -e normal,build --prefix none | grep '^gstreamer' >/dev/null; then
  die "map-api depends on GStreamer (cargo tree -p map-api -i gstreamer)"
fi
PKG_CONFIG="$IOC_ROOT/ops/pkg-config-without-gstreamer" cargo build -p map-api --locked \
  || die "map-api does not build without the GStreamer dev packages"
# So does the ioc binary without its `video` feature (an API, ingest or core host needs no
# GStreamer); the full build below replaces it before the tests run.
log "ioc without GStreamer: cargo build -p ioc --no-default-features, pkg-config blind to GStreamer"
if cargo tree -p ioc --no-default-features -e normal,build --prefix none | grep '^gstreamer' >/dev/null; then
  die "ioc --no-default-features depends on GStreamer (cargo tree -p ioc --no-default-features -i gstreamer)"
fi
PKG_CONFIG="$IOC_ROOT/ops/pkg-config-without-gstreamer" cargo build -p ioc --no-default-features --locked \
  || die "ioc does not build without the video feature and the GStreamer dev packages"
log "cargo test --workspace"
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$IOC_RUN_DIR/test-output.log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$IOC_RUN_DIR/test-output.log" | awk '{p+=$4; f+=$6} END {print p+0, f+0}')
read -r p f <<<"$passed"
echo "${p} passed, ${f} failed"
exit "$status"
