#!/usr/bin/env bash
# README command 1: builds `ioc` and runs the whole pipeline in one process on the embedded
# default (in-memory bus, simulated sensors, no Kafka or database), serving the wall page on
# http://127.0.0.1:8080/. Extra arguments go to `ioc demo` (try --help).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_build_deps
cd "$IOC_ROOT"
log "building ioc (release)"
cargo build --release --locked --bin ioc
exec "$IOC_ROOT/target/release/ioc" demo "$@"
