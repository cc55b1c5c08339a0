#!/usr/bin/env bash
# `flywheel up` benchmark (issue 6): the whole system in one process, on the embedded stack
# (write-ahead log + DuckDB, no server) or, side by side with the same steps, on servers
# (`up --kafka --clickhouse`: a private tansu with its in-memory engine, as bench/ingester.sh,
# and the local ClickHouse engine, a fresh database).
#  1. start-up: spawn -> /readyz 200 on an empty data directory (3 runs);
#  2. event-to-queryable: bench/e2e_latency.py through the status API at low load, on a fresh
#     instance;
#  3. OTLP/HTTP ingest: wrk posting the 512-span GenAI payload (bench/otlp method) for SECONDS
#     with CONNECTIONS; spans/s acknowledged, and the spans found durable afterwards (WAL
#     records, or messages on the Kafka topic: what was made durable, not what got a 200),
#     process CPU and peak RSS;
#  4. sustained store rate: the ingest run leaves a backlog on the bus; for DRAIN seconds after
#     it, llm_calls rows the ingester stores per second (flywheel_ingester_rows_inserted_total)
#     and the process's CPU.
# usage: bench/up.sh [SECONDS=15] [CONNECTIONS=8] [embedded|servers] [DRAIN=60]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-8} mode=${3:-embedded} drain=${4:-60}
deploy/local/duckdb.sh >/dev/null
case $mode in
  embedded) eval "$(deploy/local/services.sh env)" 2>/dev/null || true ;;
  servers) BENCH_KAFKA=memory; . bench/common.sh ;;
  *) echo "mode: embedded or servers" >&2; exit 2 ;;
esac
cargo build --release --locked -q --bin flywheel
cargo build --release --locked -q -p flywheel-wal --example wal_stats
bin=$PWD/target/release/flywheel
out=target/bench; mkdir -p "$out"
py=${FLYWHEEL_VENV:+$FLYWHEEL_VENV/bin/}python3
[ -f "$out/genai.pb" ] || $py bench/otlp/make_payloads.py "$out" >/dev/null
admin=127.0.0.1:18888
ports="FLYWHEEL_ADMIN__LISTEN=$admin FLYWHEEL_COLLECTOR__HTTP_LISTEN=127.0.0.1:14318 FLYWHEEL_COLLECTOR__GRPC_LISTEN=127.0.0.1:14317 FLYWHEEL_API__LISTEN=127.0.0.1:18080 FLYWHEEL_DETECTOR__LISTEN=127.0.0.1:18081"
pid= ready_ms= flags=() db=
if [ "$mode" = servers ]; then
  # A fresh database per instance (start-up runs included): `up` expects a migrated schema.
  flags=(--kafka "$brokers" --clickhouse "$CLICKHOUSE_URL")
  ch() { curl -fsS "$CLICKHOUSE_URL/" --data-binary "$1"; }
fi
fresh_db() { # servers: a new migrated database, exported for the next start
  [ "$mode" = servers ] || return 0
  [ -z "$db" ] || ch "DROP DATABASE IF EXISTS $db" >/dev/null
  db=bench_up_$(date +%s%N)
  export FLYWHEEL_CLICKHOUSE__DATABASE=$db FLYWHEEL_CLICKHOUSE__URL=$CLICKHOUSE_URL
  "$bin" migrate >/dev/null
}
start() { # start DIR -> sets pid and ready_ms (spawn -> /readyz 200)
  local t0; t0=$(date +%s%N)
  env $ports RUST_LOG=warn "$bin" up --data-dir "$1" "${flags[@]}" >"$out/up.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && { ready_ms=$(( ($(date +%s%N) - t0) / 1000000 )); return; }
    sleep 0.01
  done
  echo "flywheel up not ready" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "${mem_pid:-}" ] || kill "$mem_pid" 2>/dev/null || true
  [ -z "$db" ] || ch "DROP DATABASE IF EXISTS $db" >/dev/null || true
}
trap cleanup EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%F %T') UTC; commit $(git rev-parse --short HEAD); mode $mode ${flags[*]}"

for run in 1 2 3; do
  fresh_db
  dir=$(mktemp -d); start "$dir"; stop; rm -rf "$dir"
  echo "start-up run=$run ready_ms=$ready_ms (empty data directory)"
done

fresh_db
dir=$(mktemp -d)
start "$dir"
# Event-to-queryable at low load first, then the ingest run.
$py bench/e2e_latency.py --collector http://127.0.0.1:14318 --api http://127.0.0.1:18080 --probes 50 --interval 0.1
line=$(bash bench/otlp/otlp_bench.sh "$pid" "http://127.0.0.1:14318/v1/traces" "$out/genai.pb" "$secs" "$conns" | tail -1)
echo "ingest $line"
rss=$(awk '/VmHWM/{print $2}' /proc/"$pid"/status)
echo "peak_rss_kib=$rss (after the ingest run)"

# The backlog drains into the store: llm_calls rows stored per second over DRAIN seconds.
stored() { curl -fsS "http://$admin/metrics" | awk '/^flywheel_ingester_rows_inserted_total\{.*table="llm_calls"/{print $2}'; }
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/"$pid"/stat; }
r0=$(stored); c0=$(cpu); t0=$(date +%s%N)
sleep "$drain"
r1=$(stored); c1=$(cpu); t1=$(date +%s%N)
echo "store rows_llm_calls_before=${r0:-0} after=${r1:-0} over_s=$(echo "scale=1; ($t1-$t0)/1000000000" | bc) rows_per_s=$(echo "scale=0; (${r1:-0}-${r0:-0})*1000000000/($t1-$t0)" | bc) process_cpu_s=$(echo "scale=1; ($c1-$c0)/$tick" | bc) peak_rss_kib=$(awk '/VmHWM/{print $2}' /proc/"$pid"/status)"
stop
# Each span of the bench payload has its own trace id: records on the span topic == spans.
if [ "$mode" = servers ]; then
  echo "durable on kafka: $(FLYWHEEL_KAFKA__BROKERS=$brokers "$bin" topic-stats --topic flywheel.spans.otlp)"
else
  target/release/examples/wal_stats "$dir/wal"
  du -sh "$dir"/wal "$dir"/flywheel.duckdb* | sed 's/^/disk /'
fi
rm -rf "$dir"
