#!/usr/bin/env bash
# Ingester benchmark.
#  1. Throughput, per payload (small, genai from bench/otlp): a topic is filled through the
#     collector, then a fresh ingester drains it into a fresh database; prints rows/s, the
#     ingester's own CPU-seconds (utime+stime from /proc; ClickHouse excluded) and spans per
#     CPU-second. Broker: a private tansu with its in-memory engine (not the bottleneck).
#  2. Event-to-queryable latency at a steady ~5k spans/s: `flywheel all` under wrk load while
#     bench/e2e_latency.py posts probe spans and polls llm_calls until each is visible
#     (POST sent -> row visible). Broker: BENCH_LATENCY_BROKER=memory (default) or local (the
#     durable tansu of deploy/local/services.sh).
# ClickHouse insert compression: FLYWHEEL_CLICKHOUSE__COMPRESSION=lz4 (default) or none.
#
# usage: bench/ingester.sh [FILL_SECONDS=3] [LATENCY_PROBES=100]
set -euo pipefail
cd "$(dirname "$0")/.."
fill=${1:-3} probes=${2:-100}

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
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); clickhouse compression: ${FLYWHEEL_CLICKHOUSE__COMPRESSION:-lz4}"

mem=127.0.0.1:19092
mkdir -p "$out/tansu-memory"
(cd "$out/tansu-memory" && exec tansu broker --listener-url tcp://$mem --advertised-listener-url tcp://$mem --storage-engine memory://tansu/) >/dev/null 2>&1 &
mem_pid=$!
cpid= ipid= apid= wpid=
trap 'kill $mem_pid $cpid $ipid $apid $wpid 2>/dev/null || true' EXIT
sleep 1
export FLYWHEEL_CLICKHOUSE__URL=$CLICKHOUSE_URL RUST_LOG=warn

pipeline() { # pipeline ID BROKERS: names for one run
  export FLYWHEEL_KAFKA__BROKERS=$2 FLYWHEEL_CLICKHOUSE__DATABASE=bench_$1
  export FLYWHEEL_COLLECTOR__SPANS_TOPIC=bench.$1 FLYWHEEL_INGESTER__SPANS_TOPIC=bench.$1
  export FLYWHEEL_INGESTER__GROUP_ID=bench-$1 FLYWHEEL_INGESTER__DEAD_LETTER_TOPIC=bench.dlq.$1
}

# ---- 1. throughput
for payload in small genai; do
  id=$payload$(date +%s); pipeline "$id" $mem
  FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18888 "$bin" collector >"$out/collector.log" 2>&1 &
  cpid=$!
  wait_http http://127.0.0.1:18888/readyz
  PAYLOAD="$out/$payload.pb" wrk -t2 -c8 -d"${fill}s" -s bench/otlp/post.lua http://127.0.0.1:4318/v1/traces >/dev/null
  kill -TERM $cpid; wait $cpid || true; cpid=
  spans=$("$bin" topic-stats | sed 's/.*messages=//')
  "$bin" migrate >/dev/null 2>&1
  FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18889 "$bin" ingester >"$out/ingester.log" 2>&1 &
  ipid=$!
  t0=$(date +%s.%N); c0=$(cpu $ipid)
  while [ "$(ch "SELECT count() FROM bench_$id.otel_traces")" -lt "$spans" ]; do sleep 0.1; done
  t1=$(date +%s.%N); c1=$(cpu $ipid)
  rss=$(awk '/VmHWM/{print $2}' /proc/$ipid/status)
  kill -TERM $ipid; wait $ipid || true; ipid=
  wall=$(echo "$t1 - $t0" | bc); cpus=$(echo "scale=2; ($c1 - $c0) / $tick" | bc)
  echo "throughput payload=$payload spans=$spans wall_s=$wall rows_per_s=$(echo "$spans / $wall" | bc) ingester_cpu_s=$cpus spans_per_cpu_s=$(echo "$spans / $cpus" | bc) cpu_s_per_million=$(echo "scale=2; $cpus * 1000000 / $spans" | bc) peak_rss_kib=$rss"
  ch "DROP DATABASE bench_$id" >/dev/null
done

# ---- 2. event-to-queryable latency at ~5k spans/s
broker=$mem; [ "${BENCH_LATENCY_BROKER:-memory}" = local ] && broker=$KAFKA_BROKERS
id=lat$(date +%s); pipeline "$id" "$broker"
FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18888 "$bin" all >"$out/all.log" 2>&1 &
apid=$!
wait_http http://127.0.0.1:18888/readyz
secs=$((probes / 4 + 10))
PAYLOAD="$out/genai.pb" DELAY_MS=75 wrk -t1 -c1 -d"${secs}s" -s bench/otlp/post_rate.lua http://127.0.0.1:4318/v1/traces >"$out/wrk-rate.txt" &
wpid=$!
sleep 3
"$FLYWHEEL_VENV/bin/python" bench/e2e_latency.py --collector http://127.0.0.1:4318 --clickhouse "$CLICKHOUSE_URL" \
  --database "bench_$id" --probes "$probes" --interval 0.2
wait $wpid; wpid=
reqs=$(awk '/requests in/{print $1}' "$out/wrk-rate.txt")
echo "latency broker=${BENCH_LATENCY_BROKER:-memory} background_spans_per_s=$((reqs * 512 / secs))"
kill -TERM $apid; wait $apid || true; apid=
ch "DROP DATABASE bench_$id" >/dev/null
