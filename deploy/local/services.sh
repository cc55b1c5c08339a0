#!/usr/bin/env bash
# Local Kafka-protocol broker and ClickHouse engine for development and tests, no Docker needed.
#
#   deploy/local/services.sh up       install what is missing, start, health-check, print addresses
#   deploy/local/services.sh down     stop what this script started
#   deploy/local/services.sh status   show what runs
#   deploy/local/services.sh env      print `export` lines for the addresses (eval "$(... env)")
#
# Kafka: tansu (an Apache-Kafka-compatible broker from crates.io) on 127.0.0.1:9092, with durable
# SQLite storage, or in memory with FLYWHEEL_KAFKA_STORAGE=memory (benchmarks; not for the
# tests: tansu 0.6's memory engine answered stale watermarks and committed offsets). A broker
# of another engine than an explicit FLYWHEEL_KAFKA_STORAGE asks for, or one whose log shows a
# panic since it started (tansu 0.6's SQLite engine can wedge: every request then fails, see
# docs/notes), is restarted. ClickHouse: the ClickHouse 26.9 engine from the chdb-core wheel behind a small
# HTTP adapter (deploy/local/clickhouse_adapter.py) on 127.0.0.1:8123.
# Alertmanager (Debian `prometheus-alertmanager`, 0.25) is only installed: the detector tests
# start a private one per test on a free port (tests/common/detector.rs); ALERTMANAGER_BIN names it.
# When KAFKA_BROKERS or CLICKHOUSE_URL are set, those servers are used instead and only
# health-checked. Idempotent: installs are skipped when the right version is present, and
# services already up are left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
FLYWHEEL_HOME=${FLYWHEEL_HOME:-$HOME/.local/share/flywheel}   # tools: venv
STATE=${FLYWHEEL_LOCAL_DIR:-$repo/.local}                       # data, logs, pids
TANSU_VERSION=0.6.0
VENV=$FLYWHEEL_HOME/venv
KAFKA_ADDR=127.0.0.1:9092
KAFKA_STORAGE=${FLYWHEEL_KAFKA_STORAGE:-sqlite}
CH_ADDR=127.0.0.1:8123

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

wait_for() { # wait_for NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  log "$name did not become healthy in ${secs}s"; return 1
}

install_tansu() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q " $TANSU_VERSION"; then
    return
  fi
  log "installing tansu $TANSU_VERSION (cargo install, ~10 min on 2 cores)"
  cargo install tansu --version "$TANSU_VERSION" --features libsql,dynostore --locked
}

alertmanager_bin() {
  command -v prometheus-alertmanager 2>/dev/null || command -v alertmanager 2>/dev/null || true
}

install_alertmanager() {
  if [ -n "$(alertmanager_bin)" ]; then return; fi
  if ! command -v apt-get >/dev/null; then
    log "Alertmanager is missing and apt-get is not available: install Alertmanager 0.25+ and set ALERTMANAGER_BIN"
    return 1
  fi
  log "installing Alertmanager (Debian prometheus-alertmanager)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # The package's post-install starts a system service where systemd runs; tests never use it.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus-alertmanager >&2
}

install_venv() {
  local stamp=$VENV/.flywheel-requirements
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    return
  fi
  log "installing Python packages into $VENV"
  mkdir -p "$FLYWHEEL_HOME"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
}

start_bg() { # start_bg NAME CMD... ; pid and log under $STATE
  local name=$1; shift
  mkdir -p "$STATE/log"
  nohup "$@" >>"$STATE/log/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

pid_alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

ch_ping() { curl -fsS "http://$CH_ADDR/ping" 2>/dev/null | grep -q Ok; }

up_kafka() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    log "using external Kafka at $KAFKA_BROKERS"
    wait_for kafka 10 port_open "${KAFKA_BROKERS%%,*}"
    return
  fi
  install_tansu
  case "$KAFKA_STORAGE" in
    sqlite) engine=sqlite://tansu.db ;;
    memory) engine=memory://tansu/ ;;
    *) log "FLYWHEEL_KAFKA_STORAGE must be sqlite or memory, not $KAFKA_STORAGE"; exit 2 ;;
  esac
  if port_open "$KAFKA_ADDR"; then
    if ! pid_alive kafka; then log "kafka already up on $KAFKA_ADDR (not started here: used as is)"; return; fi
    local reason=
    # Only an explicit FLYWHEEL_KAFKA_STORAGE asks for another engine than the running one.
    if [ -n "${FLYWHEEL_KAFKA_STORAGE:-}" ] && [ "$(cat "$STATE/kafka.engine" 2>/dev/null || echo sqlite)" != "$KAFKA_STORAGE" ]; then
      reason="storage is not $KAFKA_STORAGE"
    fi
    # A panic after the last start line: tansu 0.6 then fails every request (wedged).
    if awk '/^tansu broker/ {p=0} /panicked/ {p=1} END {exit !p}' "$STATE/log/kafka.log" 2>/dev/null; then
      reason="wedged (panic in $STATE/log/kafka.log)"
    fi
    if [ -z "$reason" ]; then log "kafka already up on $KAFKA_ADDR ($KAFKA_STORAGE)"; return; fi
    log "restarting kafka: $reason"
    stop kafka
    # A wedged SQLite database keeps the state that broke it.
    [ "$KAFKA_STORAGE" = memory ] || rm -rf "$STATE/kafka"
  fi
  mkdir -p "$STATE/kafka"
  # tansu resolves the sqlite path against its working directory.
  start_bg kafka sh -c "cd '$STATE/kafka' && exec tansu broker \
    --listener-url tcp://$KAFKA_ADDR --advertised-listener-url tcp://$KAFKA_ADDR \
    --storage-engine $engine"
  echo "$KAFKA_STORAGE" >"$STATE/kafka.engine"
  wait_for kafka 20 port_open "$KAFKA_ADDR"
  log "kafka (tansu $TANSU_VERSION, $KAFKA_STORAGE) up on $KAFKA_ADDR, data in $STATE/kafka"
}

up_clickhouse() {
  if [ -n "${CLICKHOUSE_URL:-}" ]; then
    log "using external ClickHouse at $CLICKHOUSE_URL"
    wait_for clickhouse 10 sh -c "curl -fsS '$CLICKHOUSE_URL/ping' | grep -q Ok"
    return
  fi
  install_venv
  if ch_ping; then log "clickhouse already up on $CH_ADDR"; return; fi
  mkdir -p "$STATE/clickhouse"
  start_bg clickhouse "$VENV/bin/python" "$here/clickhouse_adapter.py" \
    --listen "$CH_ADDR" --data "$STATE/clickhouse"
  wait_for clickhouse 60 ch_ping
  log "clickhouse (chdb engine) up on http://$CH_ADDR, data in $STATE/clickhouse"
}

print_env() {
  echo "export KAFKA_BROKERS=${KAFKA_BROKERS:-$KAFKA_ADDR}"
  echo "export CLICKHOUSE_URL=${CLICKHOUSE_URL:-http://$CH_ADDR}"
  echo "export FLYWHEEL_VENV=$VENV"
  local am; am=$(alertmanager_bin)
  [ -z "$am" ] || echo "export ALERTMANAGER_BIN=$am"
}

stop() {
  local name=$1
  if pid_alive "$name"; then
    kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_alive "$name" || break; sleep 0.1; done
    pid_alive "$name" && kill -9 "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$STATE/$name.pid"
}

case "${1:-}" in
  up)
    install_venv   # tests use it even when both services are external
    install_alertmanager   # the detector tests start their own
    up_kafka
    up_clickhouse
    print_env
    ;;
  down)
    stop kafka
    stop clickhouse
    ;;
  status)
    for s in kafka clickhouse; do
      if pid_alive "$s"; then echo "$s: running (pid $(cat "$STATE/$s.pid"))"; else echo "$s: not started by this script"; fi
    done
    port_open "${KAFKA_BROKERS:-$KAFKA_ADDR}" && echo "kafka: reachable" || echo "kafka: unreachable"
    curl -fsS "${CLICKHOUSE_URL:-http://$CH_ADDR}/ping" >/dev/null 2>&1 && echo "clickhouse: reachable" || echo "clickhouse: unreachable"
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
