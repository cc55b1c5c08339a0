#!/usr/bin/env bash
# Collector benchmark: OTLP/HTTP protobuf -> Kafka, with the side-by-side method of
# bench/otlp/ (wrk posting 512-span payloads; collector CPU from /proc), then counting what
# actually reached the topic, not what got a 200.
#
# usage: bench/collector.sh [SECONDS=15] [CONNECTIONS=8] [RUNS=3]
# Broker: BENCH_KAFKA=host:port, or BENCH_KAFKA=memory for a private tansu with its in-memory
# engine (keeps up with the collector, so the figures measure the collector), default: the
# durable local tansu broker of deploy/local/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-8} runs=${3:-3}

. bench/common.sh
cargo build --release --locked -q
bin=target/release/flywheel
out=target/bench; mkdir -p "$out"
[ -f "$out/small.pb" ] || "$FLYWHEEL_VENV/bin/python" bench/otlp/make_payloads.py "$out" >/dev/null

admin=127.0.0.1:18888
start_collector() { # start_collector TOPIC -> sets pid
  FLYWHEEL_KAFKA__BROKERS=$brokers FLYWHEEL_COLLECTOR__SPANS_TOPIC=$1 FLYWHEEL_ADMIN__LISTEN=$admin \
    RUST_LOG=warn "$bin" collector >"$out/collector.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "collector not ready" >&2; exit 1
}
stop_collector() { kill -TERM "$pid"; wait "$pid" || true; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); broker: $brokers; $(date -u +%F)"
for payload in small genai; do
  bytes=$(stat -c %s "$out/$payload.pb")
  for run in $(seq 1 "$runs"); do
    topic=bench.$payload.$(date +%s%N)
    start_collector "$topic"
    line=$(bash bench/otlp/otlp_bench.sh "$pid" "http://127.0.0.1:4318/v1/traces" "$out/$payload.pb" "$secs" "$conns" | tail -1)
    stop_collector
    # Each bench span has its own trace id, so messages on the topic == spans on the topic.
    on_topic=$(FLYWHEEL_KAFKA__BROKERS=$brokers "$bin" topic-stats --topic "$topic" | sed 's/.*messages=//')
    cpu=$(echo "$line" | sed 's/.*collector_cpu_s=\([0-9.]*\).*/\1/')
    mbps=$(echo "scale=1; $on_topic * $bytes / 512 / $cpu / 1000000" | bc)
    echo "$payload run=$run $line spans_on_topic=$on_topic MB_per_cpu_s=$mbps"
  done
done

# Memory at a steady ~10k spans/s (GenAI payload, 2 connections with a pause between requests).
topic=bench.rss.$(date +%s%N)
start_collector "$topic"
rate_out=$(PAYLOAD="$out/genai.pb" DELAY_MS=75 wrk -t1 -c2 -d"${secs}s" -s bench/otlp/post_rate.lua http://127.0.0.1:4318/v1/traces)
reqs=$(echo "$rate_out" | awk '/requests in/{print $1}')
rss=$(awk '/VmHWM/{print $2}' /proc/"$pid"/status)
stop_collector
echo "steady genai spans_per_s=$((reqs * 512 / secs)) peak_rss_kib=$rss"
