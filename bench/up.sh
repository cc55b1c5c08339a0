#!/usr/bin/env bash
# Embedded mode benchmark (issue 6): `flywheel up` on the write-ahead log and DuckDB, no server.
#  1. start-up: spawn -> /readyz 200 on an empty data directory (3 runs);
#  2. OTLP/HTTP ingest: wrk posting the 512-span GenAI payload (bench/otlp method) for SECONDS
#     with CONNECTIONS; spans/s acknowledged, and the spans found in the WAL afterwards (what
#     was made durable, not what got a 200), process CPU and peak RSS;
#  3. event-to-queryable: bench/e2e_latency.py through the status API (DuckDB) at low load
#     (run first, on the fresh instance: after the ingest run DuckDB is minutes behind).
# usage: bench/up.sh [SECONDS=15] [CONNECTIONS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-8}
deploy/local/duckdb.sh >/dev/null
eval "$(deploy/local/services.sh env)" 2>/dev/null || true
cargo build --release --locked -q --bin flywheel
cargo build --release --locked -q -p flywheel-wal --example wal_stats
bin=$PWD/target/release/flywheel
out=target/bench; mkdir -p "$out"
py=${FLYWHEEL_VENV:+$FLYWHEEL_VENV/bin/}python3
[ -f "$out/genai.pb" ] || $py bench/otlp/make_payloads.py "$out" >/dev/null
admin=127.0.0.1:18888
ports="FLYWHEEL_ADMIN__LISTEN=$admin FLYWHEEL_COLLECTOR__HTTP_LISTEN=127.0.0.1:14318 FLYWHEEL_COLLECTOR__GRPC_LISTEN=127.0.0.1:14317 FLYWHEEL_API__LISTEN=127.0.0.1:18080 FLYWHEEL_DETECTOR__LISTEN=127.0.0.1:18081"
pid= ready_ms=
start() { # start DIR -> sets pid and ready_ms (spawn -> /readyz 200)
  local t0; t0=$(date +%s%N)
  env $ports RUST_LOG=warn "$bin" up --data-dir "$1" >"$out/up.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && { ready_ms=$(( ($(date +%s%N) - t0) / 1000000 )); return; }
    sleep 0.01
  done
  echo "flywheel up not ready" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%F %T') UTC; commit $(git rev-parse --short HEAD)"

for run in 1 2 3; do
  dir=$(mktemp -d); start "$dir"; stop; rm -rf "$dir"
  echo "start-up run=$run ready_ms=$ready_ms (empty data directory)"
done

dir=$(mktemp -d)
start "$dir"
# Event-to-queryable at low load first, then the ingest run.
$py bench/e2e_latency.py --collector http://127.0.0.1:14318 --api http://127.0.0.1:18080 --probes 50 --interval 0.1
line=$(bash bench/otlp/otlp_bench.sh "$pid" "http://127.0.0.1:14318/v1/traces" "$out/genai.pb" "$secs" "$conns" | tail -1)
echo "ingest $line"
rss=$(awk '/VmHWM/{print $2}' /proc/"$pid"/status)
stop
echo "peak_rss_kib=$rss"
# Each span of the bench payload has its own trace id: records on the span topic == spans.
target/release/examples/wal_stats "$dir/wal"
du -sh "$dir"/wal "$dir"/flywheel.duckdb* | sed 's/^/disk /'
rm -rf "$dir"
