#!/usr/bin/env bash
# Ingester benchmark.
#  1. Throughput: a topic is filled through the collector (GenAI payload, bench/otlp), then a
#     fresh ingester drains it into a fresh database; prints rows/s, the ingester's own
#     CPU-seconds (utime+stime from /proc, ClickHouse excluded) and spans per CPU-second.
#     Broker: a private tansu with its in-memory engine, so the broker is not the bottleneck.
#  2. Event-to-queryable latency at a steady ~5k spans/s on the durable local broker: load with
#     wrk while bench/e2e_latency.py posts probe spans and polls llm_calls until each is visible.
#
# usage: bench/ingester.sh [FILL_SECONDS=10] [LATENCY_PROBES=100]
set -euo pipefail
cd "$(dirname "$0")/.."
fill=${1:-10} probes=${2:-100}

command -v wrk >/dev/null && command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk bc >/dev/null; }
eval "$(deploy/local/services.sh up)"
cargo build --release --locked -q
bin=$PWD/target/release/flywheel
out=target/bench; mkdir -p "$out"
[ -f "$out/genai.pb" ] || "$FLYWHEEL_VENV/bin/python" bench/otlp/make_payloads.py "$out" >/dev/null
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/"$1"/stat; }
wait_http() { for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
ch() { curl -fsS "$CLICKHOUSE_URL/" --data-binary "$1"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"

# ---- 1. throughput
mem=127.0.0.1:19092
mkdir -p "$out/tansu-memory"
(cd "$out/tansu-memory" && exec tansu broker --listener-url tcp://$mem --advertised-listener-url tcp://$mem --storage-engine memory://tansu/) >/dev/null 2>&1 &
mem_pid=$!
trap 'kill $mem_pid 2>/dev/null || true' EXIT
sleep 1
id=$(date +%s)
export FLYWHEEL_KAFKA__BROKERS=$mem FLYWHEEL_CLICKHOUSE__URL=$CLICKHOUSE_URL FLYWHEEL_CLICKHOUSE__DATABASE=bench_$id
export FLYWHEEL_COLLECTOR__SPANS_TOPIC=bench.ingest.$id FLYWHEEL_INGESTER__SPANS_TOPIC=bench.ingest.$id
export FLYWHEEL_INGESTER__GROUP_ID=bench-$id FLYWHEEL_INGESTER__DEAD_LETTER_TOPIC=bench.dlq.$id RUST_LOG=warn
FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18888 "$bin" collector >"$out/collector.log" 2>&1 &
cpid=$!
wait_http http://127.0.0.1:18888/readyz
PAYLOAD="$out/genai.pb" wrk -t2 -c8 -d"${fill}s" -s bench/otlp/post.lua http://127.0.0.1:4318/v1/traces >/dev/null
kill -TERM $cpid; wait $cpid || true
spans=$("$bin" topic-stats | sed 's/.*messages=//')
"$bin" migrate >/dev/null 2>&1
FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18889 "$bin" ingester >"$out/ingester.log" 2>&1 &
ipid=$!
t0=$(date +%s.%N); c0=$(cpu $ipid)
while [ "$(ch "SELECT count() FROM bench_$id.otel_traces")" -lt "$spans" ]; do sleep 0.2; done
t1=$(date +%s.%N); c1=$(cpu $ipid)
rss=$(awk '/VmHWM/{print $2}' /proc/$ipid/status)
calls=$(ch "SELECT count() FROM bench_$id.llm_calls")
kill -TERM $ipid; wait $ipid || true
wall=$(echo "$t1 - $t0" | bc); cpus=$(echo "scale=2; ($c1 - $c0) / $tick" | bc)
echo "throughput spans=$spans llm_calls=$calls wall_s=$wall rows_per_s=$(echo "$spans / $wall" | bc) ingester_cpu_s=$cpus spans_per_cpu_s=$(echo "$spans / $cpus" | bc) cpu_s_per_million=$(echo "scale=2; $cpus * 1000000 / $spans" | bc) peak_rss_kib=$rss"
ch "DROP DATABASE bench_$id" >/dev/null

# ---- 2. event-to-queryable latency at ~5k spans/s, durable local broker
kill $mem_pid 2>/dev/null || true
export FLYWHEEL_KAFKA__BROKERS=$KAFKA_BROKERS FLYWHEEL_CLICKHOUSE__DATABASE=bench_lat_$id
export FLYWHEEL_COLLECTOR__SPANS_TOPIC=bench.lat.$id FLYWHEEL_INGESTER__SPANS_TOPIC=bench.lat.$id FLYWHEEL_INGESTER__GROUP_ID=bench-lat-$id
FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18888 "$bin" all >"$out/all.log" 2>&1 &
apid=$!
wait_http http://127.0.0.1:18888/readyz
sleep 2
PAYLOAD="$out/genai.pb" DELAY_MS=95 wrk -t1 -c1 -d"$((probes / 5 + 10))s" -s bench/otlp/post_rate.lua http://127.0.0.1:4318/v1/traces >"$out/wrk-rate.txt" &
wpid=$!
sleep 3
"$FLYWHEEL_VENV/bin/python" bench/e2e_latency.py --collector http://127.0.0.1:4318 --clickhouse "$CLICKHOUSE_URL" \
  --database bench_lat_$id --probes "$probes" --interval 0.2
wait $wpid
reqs=$(awk '/requests in/{print $1}' "$out/wrk-rate.txt"); secs=$((probes / 5 + 10))
echo "background load: $((reqs * 512 / secs)) GenAI spans/s"
curl -fsS http://127.0.0.1:18888/metrics | grep -E '^flywheel_ingester_event_to_stored_seconds_(sum|count)'
kill -TERM $apid; wait $apid || true
ch "DROP DATABASE bench_lat_$id" >/dev/null
