# Shared set-up of the benchmark scripts (sourced): tools, local services and the broker.
# Sets `brokers`: BENCH_KAFKA=host:port, or BENCH_KAFKA=memory for a private tansu with its
# in-memory engine on 127.0.0.1:19092 (keeps up with the collector, so the figures measure the
# collector; stopped on exit), default: the durable local tansu of deploy/local/services.sh.
command -v wrk >/dev/null && command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk bc >/dev/null; }
eval "$(deploy/local/services.sh up)"
brokers=${BENCH_KAFKA:-$KAFKA_BROKERS}
if [ "$brokers" = memory ]; then
  brokers=127.0.0.1:19092
  mkdir -p target/bench/tansu-memory
  (cd target/bench/tansu-memory && exec tansu broker --listener-url tcp://$brokers \
    --advertised-listener-url tcp://$brokers --storage-engine memory://tansu/) >/dev/null 2>&1 &
  mem_pid=$!
  trap 'kill $mem_pid 2>/dev/null || true' EXIT
  sleep 1
fi
