#!/usr/bin/env bash
# Feedback and signals benchmark: POST /v1/feedback and /v1/signals with JSON batches of N items
# (bench/feedback/make_batches.py), with the method of bench/otlp/ (wrk; collector CPU from
# /proc), then counting the items that actually reached the Kafka topics, not what got a 200.
# Reports items on the topic per second and per collector CPU-second.
#
# usage: bench/feedback.sh [SECONDS=15] [CONNECTIONS=8] [RUNS=3] [ITEMS_PER_REQUEST=100]
# Broker: BENCH_KAFKA=host:port, or BENCH_KAFKA=memory for a private tansu with its in-memory
# engine (keeps up with the collector, so the figures measure the collector), default: the
# durable local tansu broker of deploy/local/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-8} runs=${3:-3} items=${4:-100}

. bench/common.sh
cargo build --release --locked -q
bin=target/release/flywheel
out=target/bench/feedback; mkdir -p "$out"
python3 bench/feedback/make_batches.py "$out" "$items"

http=127.0.0.1:14318 grpc=127.0.0.1:14317 admin=127.0.0.1:18889
start_collector() { # start_collector FEEDBACK_TOPIC SIGNALS_TOPIC -> sets pid
  FLYWHEEL_KAFKA__BROKERS=$brokers FLYWHEEL_COLLECTOR__FEEDBACK_TOPIC=$1 \
    FLYWHEEL_COLLECTOR__SIGNALS_TOPIC=$2 FLYWHEEL_COLLECTOR__SPANS_TOPIC=bench.fb.spans \
    FLYWHEEL_COLLECTOR__HTTP_LISTEN=$http FLYWHEEL_COLLECTOR__GRPC_LISTEN=$grpc \
    FLYWHEEL_ADMIN__LISTEN=$admin RUST_LOG=warn "$bin" collector >"$out/collector.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "collector not ready" >&2; exit 1
}
stop_collector() { kill -TERM "$pid"; wait "$pid" || true; }
field() { echo "$1" | sed -n "s/.*$2=\([^ ]*\).*/\1/p"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); broker: $brokers; $(date -u +%F); $items items per request"
for kind in feedback signals; do
  bytes=$(stat -c %s "$out/$kind.json")
  for run in $(seq 1 "$runs"); do
    stamp=$(date +%s%N)
    start_collector "bench.fb.$stamp" "bench.sig.$stamp"
    topic=bench.fb.$stamp; [ "$kind" = signals ] && topic=bench.sig.$stamp
    line=$(CONTENT_TYPE=application/json bash bench/otlp/otlp_bench.sh "$pid" "http://$http/v1/$kind" "$out/$kind.json" "$secs" "$conns" | tail -1)
    stop_collector
    on_topic=$(FLYWHEEL_KAFKA__BROKERS=$brokers "$bin" topic-stats --topic "$topic" | sed 's/.*messages=//')
    cpu=$(field "$line" collector_cpu_s)
    echo "$kind run=$run requests_ok=$(field "$line" requests_ok) non2xx=$(field "$line" non2xx)" \
      "items_on_topic=$on_topic items_per_s=$(echo "$on_topic / $secs" | bc)" \
      "collector_cpu_s=$cpu items_per_cpu_s=$(echo "scale=0; $on_topic / $cpu" | bc)" \
      "request_bytes=$bytes p50=$(field "$line" p50) p99=$(field "$line" p99) peak_rss_kib=$(field "$line" peak_rss_kib)"
  done
done
