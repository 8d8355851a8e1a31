# Shared helpers for ops scripts: package installs on Debian, service start-up, waiting.
# Sourced, not run.

set -euo pipefail

IOC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Service daemons (mosquitto) and runuser live in sbin, which a bare PATH may lack.
for d in /usr/local/sbin /usr/sbin /sbin; do
  case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH
IOC_RUN_DIR="${IOC_RUN_DIR:-/tmp/ioc-test-services}"
mkdir -p "$IOC_RUN_DIR"
# pids of the services this shell started (and so stops on exit)
STARTED_PIDS=()

log() { printf '[ops] %s\n' "$*" >&2; }
die() { printf '[ops] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_UPDATED=""
# apt_install PKG... : installs the Debian packages that are not installed yet.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

need_rust() {
  # rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo is not installed: install a Rust toolchain (rustup, Rust 1.85 or newer)"
}

# Build dependencies of the workspace (rdkafka builds the bundled librdkafka with make and a C
# compiler; the video crate links GStreamer, and its cameras need the RTSP, H.264 and JPEG
# plugins at run time; the fixture RTSP server needs the RTSP server library and x264).
ensure_build_deps() {
  need_rust
  apt_install build-essential pkg-config ca-certificates curl \
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
}

# wait_port HOST PORT SECONDS NAME
wait_port() {
  local host=$1 port=$2 secs=$3 name=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$name did not open $host:$port within ${secs}s (log: $IOC_RUN_DIR/$name.log)"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# A Kafka-protocol broker: the `tansu` broker from crates.io, in-memory storage.
start_kafka() {
  local port=${IOC_TEST_KAFKA_PORT:-19092}
  if ! command -v tansu >/dev/null; then
    [ -x "$HOME/.cargo/bin/tansu" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v tansu >/dev/null; then
    log "building the tansu Kafka-protocol broker (cargo install, about 10 minutes, once)"
    cargo install --locked tansu --features dynostore >"$IOC_RUN_DIR/tansu-install.log" 2>&1 \
      || die "cargo install tansu failed (log: $IOC_RUN_DIR/tansu-install.log)"
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if port_open 127.0.0.1 "$port"; then
    log "a broker already listens on 127.0.0.1:$port; using it"
  else
    log "starting tansu on 127.0.0.1:$port"
    nohup tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ >"$IOC_RUN_DIR/kafka.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_port 127.0.0.1 "$port" 30 kafka
  fi
  export IOC_TEST_KAFKA="127.0.0.1:$port"
  # The broker-outage test starts a tansu of its own behind a proxy it can take down.
  IOC_TEST_TANSU="$(command -v tansu || true)"
  export IOC_TEST_TANSU
}

# Mosquitto on its own port with its own config (no persistence, anonymous on loopback only).
start_mqtt() {
  local port=${IOC_TEST_MQTT_PORT:-18830}
  apt_install mosquitto mosquitto-clients
  if port_open 127.0.0.1 "$port"; then
    log "an MQTT broker already listens on 127.0.0.1:$port; using it"
  else
    cat >"$IOC_RUN_DIR/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 100
max_queued_messages 100000
CONF
    log "starting mosquitto on 127.0.0.1:$port"
    nohup mosquitto -c "$IOC_RUN_DIR/mosquitto.conf" >"$IOC_RUN_DIR/mqtt.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_port 127.0.0.1 "$port" 15 mqtt
  fi
  export IOC_TEST_MQTT="127.0.0.1:$port"
}

# PostgreSQL: the machine's cluster, started if it is not running.
start_postgres() {
  apt_install postgresql postgresql-client
  if ! port_open 127.0.0.1 5432; then
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    [ -n "$ver" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    log "starting PostgreSQL $ver"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || die "could not start PostgreSQL $ver"
    wait_port 127.0.0.1 5432 30 postgres
  fi
  export IOC_TEST_DATABASE_URL="${IOC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  # Databases the store tests created in earlier runs (each test makes its own, ioc_t_*).
  psql "$IOC_TEST_DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'ioc\_t\_%'" 2>/dev/null |
    while read -r db; do psql "$IOC_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
}

# The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin).
pg_server_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && best="$d"
  done
  [ -n "$best" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)"
  printf '%s\n' "$best"
}

# run_as_postgres CMD... : the server refuses to run as root.
run_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# TimescaleDB for the second history layout, in this order:
#  1. already installed in the server's own directories (timescaledb.so in its pkglibdir): use it;
#  2. a source tarball (IOC_TIMESCALEDB_SRC, default ../shared/vendor/timescaledb-*.tar.gz):
#     built once into a private prefix (a copy of the server's directories with the extension
#     installed into it, so the system cluster is never touched), cached under IOC_CACHE_DIR
#     (/var/tmp/ioc-cache) and keyed by the tarball's hash and the server's version; without a
#     tarball, a prefix cached from one for this server version;
#  3. neither: Timescale's Debian repository (needs internet), or fail naming what is missing.
# Sets IOC_TEST_PG_BIN to a server bin directory that can preload timescaledb.
ensure_timescaledb() {
  local bin ver libdir
  bin=$(pg_server_bin)
  libdir=$("$bin/pg_config" --pkglibdir)
  if [ -f "$libdir/timescaledb.so" ]; then
    log "TimescaleDB is installed for $("$bin/pg_config" --version): using it"
    export IOC_TEST_PG_BIN="$bin"
    return 0
  fi
  local src="${IOC_TIMESCALEDB_SRC:-}"
  if [ -z "$src" ]; then
    src=$(ls "$IOC_ROOT"/../shared/vendor/timescaledb-*.tar.gz 2>/dev/null | sort -V | tail -n1 || true)
  fi
  if [ -n "$src" ] && [ -f "$src" ]; then
    build_timescaledb "$src" "$bin"
    return 0
  fi
  # No tarball here (a clone outside the workspace): a build cached from one on this machine.
  local pgv cached
  pgv=$("$bin/pg_config" --version | awk '{print $2}')
  cached=$(ls -d "${IOC_CACHE_DIR:-/var/tmp/ioc-cache}"/timescaledb-*-pg"$pgv"/.built 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$cached" ]; then
    local prefix
    prefix=$(dirname "$cached")
    log "no TimescaleDB source tarball; using the build cached in $prefix"
    export IOC_TEST_PG_BIN="$prefix$(dirname "$bin")/bin"
    return 0
  fi
  ver=$(basename "$(dirname "$bin")")
  log "no TimescaleDB source tarball (IOC_TIMESCALEDB_SRC); trying Timescale's Debian repository"
  if install_timescaledb_from_repo "$ver" && [ -f "$libdir/timescaledb.so" ]; then
    export IOC_TEST_PG_BIN="$bin"
    return 0
  fi
  die "TimescaleDB is missing: set IOC_TIMESCALEDB_SRC to a TimescaleDB source tarball (e.g. timescaledb-2.28.3.tar.gz for PostgreSQL $ver), or install the Debian package timescaledb-2-postgresql-$ver from Timescale's repository"
}

# build_timescaledb TARBALL SERVER_BIN: the private prefix of ensure_timescaledb, step 2.
build_timescaledb() {
  local src=$1 bin=$2 sum pgv key cache prefix build libsub sharesub
  apt_install cmake build-essential libkrb5-dev "postgresql-server-dev-$(basename "$(dirname "$bin")")"
  sum=$(sha256sum "$src" | cut -c1-12)
  pgv=$("$bin/pg_config" --version | awk '{print $2}')
  key="$(basename "$src" .tar.gz)-$sum-pg$pgv"
  cache="${IOC_CACHE_DIR:-/var/tmp/ioc-cache}"
  prefix="$cache/$key"
  libsub=$(dirname "$bin")            # /usr/lib/postgresql/N
  sharesub=$("$bin/pg_config" --sharedir)  # /usr/share/postgresql/N
  if [ -f "$prefix/.built" ]; then
    log "TimescaleDB from $(basename "$src"), cached in $prefix"
  else
    log "building TimescaleDB from $(basename "$src") into $prefix (a few minutes, once per machine)"
    rm -rf "$prefix" "$cache/build-$key"
    mkdir -p "$prefix$libsub" "$prefix$sharesub" "$cache/build-$key"
    # The server's own directories, copied: Debian's binaries find their files relative to
    # their own location, so the copy loads the extension installed into it.
    cp -a "$libsub/." "$prefix$libsub/"
    cp -a "$sharesub/." "$prefix$sharesub/"
    tar -xzf "$src" -C "$cache/build-$key" --strip-components=1
    (
      cd "$cache/build-$key"
      ./bootstrap -DPG_CONFIG="$bin/pg_config" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF
      cd build
      make -j"$(nproc)"
      make install DESTDIR="$prefix"
    ) >"$IOC_RUN_DIR/timescaledb-build.log" 2>&1 \
      || die "building TimescaleDB failed (log: $IOC_RUN_DIR/timescaledb-build.log)"
    [ -f "$prefix$libsub/lib/timescaledb.so" ] || die "the TimescaleDB build installed no timescaledb.so (log: $IOC_RUN_DIR/timescaledb-build.log)"
    rm -rf "$cache/build-$key"
    touch "$prefix/.built"
  fi
  export IOC_TEST_PG_BIN="$prefix$libsub/bin"
}

# Timescale's documented Debian install (step 3 of ensure_timescaledb); fails without internet.
install_timescaledb_from_repo() {
  local ver=$1 codename
  apt_install gnupg curl lsb-release
  codename=$(lsb_release -cs)
  local key="$IOC_RUN_DIR/timescaledb.gpgkey"
  # Nothing is written to apt's configuration unless the key could be fetched.
  curl -fsSL --max-time 20 https://packagecloud.io/timescale/timescaledb/gpgkey -o "$key" 2>/dev/null || return 1
  $SUDO gpg --dearmor -o /etc/apt/trusted.gpg.d/timescaledb.gpg <"$key" 2>/dev/null || return 1
  echo "deb https://packagecloud.io/timescale/timescaledb/debian/ $codename main" |
    $SUDO tee /etc/apt/sources.list.d/timescaledb.list >/dev/null
  APT_UPDATED=""
  apt_install "timescaledb-2-postgresql-$ver"
}

# A private PostgreSQL server preloading TimescaleDB (IOC_TEST_TIMESCALE_URL); the store and
# history tests run every case on it and on the plain server (IOC_TEST_DATABASE_URL).
start_timescaledb() {
  local port=${IOC_TEST_TIMESCALE_PORT:-15433} dir="$IOC_RUN_DIR/timescaledb"
  ensure_timescaledb
  if port_open 127.0.0.1 "$port"; then
    log "a server already listens on 127.0.0.1:$port; using it as the TimescaleDB server"
  else
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    run_as_postgres "$IOC_TEST_PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync \
      >"$IOC_RUN_DIR/timescaledb-initdb.log" 2>&1 || die "initdb for TimescaleDB failed (log: $IOC_RUN_DIR/timescaledb-initdb.log)"
    log "starting PostgreSQL with TimescaleDB on 127.0.0.1:$port"
    # Every database with the extension runs its own job scheduler: the tests make many.
    run_as_postgres "$IOC_TEST_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c shared_preload_libraries=timescaledb -c max_worker_processes=64 -c timescaledb.max_background_workers=48 -c max_connections=300 -c timescaledb.telemetry_level=off" \
      start >/dev/null || die "PostgreSQL with TimescaleDB did not start (log: $dir/server.log)"
    TIMESCALE_DATA="$dir/data"
  fi
  export IOC_TEST_TIMESCALE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  psql "$IOC_TEST_TIMESCALE_URL" -qc "CREATE EXTENSION IF NOT EXISTS timescaledb" >/dev/null 2>&1 \
    || die "the TimescaleDB server at $IOC_TEST_TIMESCALE_URL cannot create the timescaledb extension (log: $dir/server.log)"
  psql "$IOC_TEST_TIMESCALE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'ioc\_t\_%'" 2>/dev/null |
    while read -r db; do psql "$IOC_TEST_TIMESCALE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
  log "TimescaleDB $(psql "$IOC_TEST_TIMESCALE_URL" -Atc "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") on $(psql "$IOC_TEST_TIMESCALE_URL" -Atc 'SHOW server_version')"
}

# Independent readers the tests check our output with: exiftool (photo metadata).
ensure_test_tools() {
  apt_install libimage-exiftool-perl
  command -v exiftool >/dev/null || die "exiftool is missing after installing libimage-exiftool-perl"
  # GDAL makes the MBTiles basemap the basemap test serves.
  apt_install gdal-bin
  command -v gdal_translate >/dev/null || die "gdal_translate is missing after installing gdal-bin"
  export IOC_TEST_GDAL_TRANSLATE="$(command -v gdal_translate)"
  export IOC_TEST_GDALADDO="$(command -v gdaladdo)"
  # nginx terminates TLS in front of ioc in the proxy test (its own instance, its own ports);
  # openssl makes the test's certificates.
  apt_install nginx-light openssl
  [ -x /usr/sbin/nginx ] || die "nginx is missing after installing nginx-light"
  export IOC_TEST_NGINX=/usr/sbin/nginx
  export IOC_TEST_OPENSSL="$(command -v openssl)"
}

start_chromium() {
  apt_install chromium
  export IOC_TEST_CHROMIUM="$(command -v chromium)"
}

# A Python with `georeport` (an Open311 GeoReport v2 client from PyPI) for the Open311 test.
start_python_client() {
  local venv="$IOC_RUN_DIR/py"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import georeport' 2>/dev/null; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; } \
      || die "could not make a Python virtual environment"
    log "installing the georeport Open311 client from PyPI"
    "$venv/bin/pip" install -q "georeport==0.3.1" >"$IOC_RUN_DIR/pip.log" 2>&1 \
      || die "pip install georeport failed (log: $IOC_RUN_DIR/pip.log)"
  fi
  export IOC_TEST_PYTHON="$venv/bin/python"
}

# A real OpenID provider for the single sign-on tests: oidc-provider from npm, run by the
# machine's Node.js; the tests start it (ops/oidc/provider.mjs) with their own clients, users
# and keys.
start_oidc_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  local dir="$IOC_RUN_DIR/oidc" version=9.13.3
  if [ ! -f "$dir/node_modules/oidc-provider/package.json" ] \
    || ! grep -q "\"version\": \"$version\"" "$dir/node_modules/oidc-provider/package.json"; then
    mkdir -p "$dir"
    printf '{"name": "ioc-test-oidc", "private": true, "type": "module"}\n' >"$dir/package.json"
    log "installing oidc-provider $version from npm"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "oidc-provider@$version" >"$dir/npm.log" 2>&1) \
      || die "npm install oidc-provider failed (log: $dir/npm.log)"
  fi
  export IOC_TEST_NODE="$(command -v node)"
  export IOC_TEST_OIDC_MODULES="$dir/node_modules"
}

# The Debian package of ioc (cargo-deb from crates.io): exports IOC_TEST_DEB. A release build
# unless IOC_PACKAGE_PROFILE names another cargo profile (the test command packages the dev
# build it makes anyway: what the package test checks, installing, dependencies, units,
# does not depend on optimisation, and a release build would add ten minutes).
build_package() {
  local version=3.6.0
  if ! cargo deb --version 2>/dev/null | grep -q "$version"; then
    log "installing cargo-deb $version from crates.io (once)"
    cargo install cargo-deb --version "$version" --locked >"$IOC_RUN_DIR/cargo-deb-install.log" 2>&1 \
      || die "cargo install cargo-deb failed (log: $IOC_RUN_DIR/cargo-deb-install.log)"
  fi
  apt_install dpkg-dev
  local profile="${IOC_PACKAGE_PROFILE:-release}" build=()
  # IOC_PACKAGE_PREBUILT=1: package the binary already in target/ (the test command's own
  # build, so that the package costs no second build with other features).
  [ -n "${IOC_PACKAGE_PREBUILT:-}" ] && build=(--no-build)
  log "building the Debian package (cargo deb, the $profile build of ioc)"
  local out
  # The binary stripped; its debug symbols in the -dbgsym package beside it.
  out=$(cd "$IOC_ROOT" && cargo deb -p ioc --locked --profile "$profile" "${build[@]}" --dbgsym 2>"$IOC_RUN_DIR/cargo-deb.log" | grep '\.deb$' | tail -n 1) \
    || die "cargo deb failed (log: $IOC_RUN_DIR/cargo-deb.log)"
  [ -f "$out" ] || die "cargo deb made no package (log: $IOC_RUN_DIR/cargo-deb.log)"
  export IOC_TEST_DEB="$out"
}

# A fresh Debian 12 root made with debootstrap, kept as a tarball and unpacked anew for each
# run of the package test: exports IOC_TEST_DEBIAN_ROOT_TAR.
make_debian_root() {
  apt_install debootstrap
  local tar="$IOC_RUN_DIR/debian-12-root.tar"
  if [ ! -s "$tar" ]; then
    local dir="$IOC_RUN_DIR/debian-12-root"
    rm -rf "$dir"
    log "making a Debian 12 root with debootstrap (once, a few minutes)"
    $SUDO debootstrap --variant=minbase bookworm "$dir" "${IOC_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
      >"$IOC_RUN_DIR/debootstrap.log" 2>&1 || die "debootstrap failed (log: $IOC_RUN_DIR/debootstrap.log)"
    $SUDO tar -C "$dir" -cf "$tar.part" . && mv "$tar.part" "$tar"
    $SUDO rm -rf "$dir"
  fi
  export IOC_TEST_DEBIAN_ROOT_TAR="$tar"
}

# Stops the services this shell started; those it found running are left alone.
stop_services() {
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
  if [ -n "${TIMESCALE_DATA:-}" ]; then
    run_as_postgres "$IOC_TEST_PG_BIN/pg_ctl" -D "$TIMESCALE_DATA" -m fast -w stop >/dev/null 2>&1 || true
    TIMESCALE_DATA=""
  fi
}
