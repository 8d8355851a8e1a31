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

# Independent readers the tests check our output with: exiftool (photo metadata).
ensure_test_tools() {
  apt_install libimage-exiftool-perl
  command -v exiftool >/dev/null || die "exiftool is missing after installing libimage-exiftool-perl"
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

# Stops the services this shell started; those it found running are left alone.
stop_services() {
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}
