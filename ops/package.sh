#!/usr/bin/env bash
# Builds the Debian package of ioc (cargo-deb from crates.io; a release build):
# target/debian/ioc_<version>_amd64.deb. Install it with `apt install ./ioc_*.deb`; see
# ops/DEPLOY.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_build_deps
build_package
log "package: $IOC_TEST_DEB"
