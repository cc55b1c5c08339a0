#!/usr/bin/env bash
# MTTD benchmark (issue 5): how soon `flywheel all` (collector + ingester + detector) pages on
# each kind of incident `flywheel loadgen` injects, and how many false alerts it raises on clean
# traffic. Broker: a private tansu with its in-memory engine (the shared broker is not loaded);
# ClickHouse: a scratch database per part, dropped at the end. Alerts: a webhook receiver
# (bench/mttd/mttd.py hook) that stamps every alert with the wall clock when it arrives.
#
#  1. Real time: bench/mttd/incidents-rt.toml (one incident of each kind, 30 s each with clean
#     gaps) against SLOs with scaled-down windows (one page rule over 30 s / 10 s) and a cost
#     change policy over 5 s intervals. Per incident: detection = first alert (wall) - incident
#     start (wall), beside two yardsticks: the nominal minimum of the policy for the scenario's
#     nominal ratios (burn.rs `rule_detection_time`), and the exact minimum on the traffic
#     actually received (services/detector/examples/mttd_oracle.rs: continuous windows,
#     evaluated at every arrival at the collector). Pipeline overhead = detection - exact minimum.
#  2. Simulated clock: bench/mttd/clean-7d.toml (tools/loadgen/scenarios/clean-7d.toml with every
#     client streaming: 7 days of clean traffic ending now, flat out) against the same SLOs
#     with production windows (the SRE workbook policy): every alert is a false one.
#
# usage: bench/mttd.sh [realtime|clean|all]   (default all; about 7 + 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
eval "$(deploy/local/services.sh up)"
cargo build --release --locked -q
cargo build --release --locked -q -p flywheel-detector --example mttd_oracle
bin=$PWD/target/release/flywheel oracle=$PWD/target/release/examples/mttd_oracle
py=${FLYWHEEL_VENV:+$FLYWHEEL_VENV/bin/}python3
out=target/bench/mttd; mkdir -p "$out"
mem=127.0.0.1:19093 hook_port=18099
ch() { curl -fsS "$CLICKHOUSE_URL/" --data-binary "$1"; }
wait_http() { for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
metric() { curl -fsS http://127.0.0.1:18888/metrics 2>/dev/null | grep -F "$1" | awk '{s+=$2} END {print s+0}'; }
tpid= apid= hpid=
cleanup() { kill $apid 2>/dev/null || true; sleep 1; kill $tpid $hpid 2>/dev/null || true; }
trap cleanup EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%F %T') UTC; commit $(git rev-parse --short HEAD)"

# The SLOs of both parts; RULES is the alerting block of every SLO.
slo_file() { # slo_file RULES_YAML [COST_POLICIES_YAML]
  local rules=$1
  cat <<YAML
${2:-}
slos:
  - name: availability
    selector: { project: default }
    sli: availability
    objective: 0.99
    window: 30d
$(sed 's/@F@/10/; s/@M@/3/' <<<"$rules")
  - name: ttft
    selector: { project: default }
    sli:
      latency: { metric: ttft, threshold: 2s }
    objective: 0.98
    window: 30d
$(sed 's/@F@/5/; s/@M@/3/' <<<"$rules")
  - name: thumbs-down
    selector: { project: default }
    sli:
      negative_feedback: { name: thumbs, negative: { boolean: false } }
    objective: 0.8
    window: 7d
$(sed 's/@F@/1.5/; s/@M@/8/' <<<"$rules")
  - name: regenerate
    selector: { project: default }
    sli:
      signal: { signal: regenerate }
    objective: 0.9
    window: 7d
$(sed 's/@F@/1.5/; s/@M@/3/' <<<"$rules")
  - name: goodput
    selector: { project: default }
    sli:
      goodput: { ttft: 2s, tpot: 50ms }
    objective: 0.95
    window: 30d
$(sed 's/@F@/5/; s/@M@/3/' <<<"$rules")
YAML
}

start() { # start ID SLO_FILE LATENESS_MS IDLE_ADVANCE_MS EVALUATION_INTERVAL_MS: broker, hook, flywheel all
  local id=$1
  (mkdir -p "$out/tansu-$id" && cd "$out/tansu-$id" && exec tansu broker --listener-url tcp://$mem \
    --advertised-listener-url tcp://$mem --storage-engine memory://tansu/) >"$out/tansu-$id.log" 2>&1 &
  tpid=$!
  : >"$out/hook-$id.jsonl"
  $py bench/mttd/mttd.py hook $hook_port "$out/hook-$id.jsonl" &
  hpid=$!
  sleep 1
  cat >"$out/flywheel-$id.toml" <<TOML
[detector]
group_id = "mttd-$id"
slo_file = "$2"
listen = "127.0.0.1:18081"
evaluation_interval_ms = $5
lateness_ms = $3
idle_advance_ms = $4
resend_interval_ms = 60000
webhook_urls = ["http://127.0.0.1:$hook_port/hook"]
TOML
  FLYWHEEL_KAFKA__BROKERS=$mem FLYWHEEL_CLICKHOUSE__URL=$CLICKHOUSE_URL FLYWHEEL_CLICKHOUSE__DATABASE=mttd_$id \
    FLYWHEEL_COLLECTOR__HTTP_LISTEN=127.0.0.1:14318 FLYWHEEL_COLLECTOR__GRPC_LISTEN=127.0.0.1:14317 \
    FLYWHEEL_ADMIN__LISTEN=127.0.0.1:18888 RUST_LOG=warn \
    "$bin" all --config "$out/flywheel-$id.toml" >"$out/all-$id.log" 2>&1 &
  apid=$!
  wait_http http://127.0.0.1:18888/readyz
  wait_http http://127.0.0.1:18888/metrics
}

stop() { # stop ID: detector figures, then everything down and the database dropped
  echo "detector: calls counted $(metric 'kind="call",outcome="counted"'), events refused as late $(metric 'outcome="late"'), all events by outcome:"
  curl -fsS http://127.0.0.1:18888/metrics | grep '^flywheel_detector_events_total' | sed 's/^/  /' || true
  echo "alerts table: $(ch "SELECT count() FROM mttd_$1.alerts") rows"
  kill -TERM $apid; wait $apid || true; apid=
  kill $hpid $tpid 2>/dev/null || true; wait $hpid $tpid 2>/dev/null || true; hpid= tpid=
  ch "DROP DATABASE IF EXISTS mttd_$1" >/dev/null
}

if [ "$part" = all ] || [ "$part" = realtime ]; then
  id=rt$(date +%s)
  rules='    alerting:
      windows:
        - { long: 30s, short: 10s, burn_rate: @F@, severity: page }
      min_events: @M@ # 8 for thumbs-down: few thumbs per 10 s per model
      resolve_below: 0.5
      resolve_for: 10s'
  # The cost spike: change detection of cost per call over 5 s intervals against a 2 min
  # baseline (CUSUM k = 1.5, h = 8: at least 4 intervals over z = 4 to fire).
  cost='cost_policies:
  - name: cost-per-call
    selector: { project: default }
    severity: page
    change: { metric: cost_per_call, interval: 5s, baseline: 2m, min_calls: 5 }'
  slo_file "$rules" "$cost" >"$out/slos-rt.yaml"
  start "$id" "$PWD/$out/slos-rt.yaml" "${MTTD_LATENESS_MS:-10000}" 15000 250
  echo "== real time: bench/mttd/incidents-rt.toml, SLO windows 30s/10s, lateness ${MTTD_LATENESS_MS:-10000} ms"
  "$bin" loadgen --scenario bench/mttd/incidents-rt.toml --endpoint http://127.0.0.1:14318 \
    --ground-truth "$out/truth-rt.jsonl" >"$out/loadgen-rt.log" 2>&1 || { echo "loadgen failed:"; tail "$out/loadgen-rt.log"; }
  sleep 30 # let the last alerts arrive
  # The exact earliest breach of every SLO on the traffic actually received (examples/mttd_oracle.rs).
  "$oracle" "$mem" "$out/slos-rt.yaml" >"$out/oracle-rt.jsonl"
  MTTD_LATENESS_S=$(( ${MTTD_LATENESS_MS:-10000} / 1000 )) $py bench/mttd/mttd.py report realtime "$out/truth-rt.jsonl" "$out/hook-$id.jsonl" "$out/slos-rt.yaml" "$out/oracle-rt.jsonl"
  stop "$id"
fi

if [ "$part" = all ] || [ "$part" = clean ]; then
  id=clean$(date +%s)
  rules='    alerting:
      windows:
        - { long: 1h, short: 5m, burn_rate: @F@x14.4, severity: page }
        - { long: 6h, short: 30m, burn_rate: @F@x6, severity: page }
        - { long: 3d, short: 6h, burn_rate: @F@x1, severity: ticket }'
  # production windows and the workbook's factors (14.4 / 6 / 1) whatever @F@ was
  slo_file "$rules" | sed -E 's/burn_rate: [0-9.]+x/burn_rate: /' >"$out/slos-clean.yaml"
  # Paced at ${MTTD_SPEEDUP:-2000}x with 1 h of lateness: flat out (--speedup max), partitions,
  # topics and concurrent requests interleave hours of simulated time and 30 s lateness refused
  # 1.2M of 1.2M calls. Evaluated every 10 s of event time (the detector also ticks on event
  # time, so the simulated clock does not skip evaluations: 60,480 of them over 7 days).
  start "$id" "$PWD/$out/slos-clean.yaml" "${MTTD_SIM_LATENESS_MS:-3600000}" 60000 10000
  echo "== simulated clock: bench/mttd/clean-7d.toml, workbook policy (14.4x 1h/5m, 6x 6h/30m page; 1x 3d/6h ticket)"
  t0=$(date +%s)
  "$bin" loadgen --scenario bench/mttd/clean-7d.toml --speedup "${MTTD_SPEEDUP:-2000}" --endpoint http://127.0.0.1:14318 \
    --ground-truth "$out/truth-clean.jsonl" >"$out/loadgen-clean.log" 2>&1 || { echo "loadgen failed:"; tail "$out/loadgen-clean.log"; }
  echo "loadgen: $(( $(date +%s) - t0 )) s wall for 7 simulated days"
  # wait until the detector has caught up with the topic (no new counted events for 10 s)
  last=-1; while :; do n=$(metric 'outcome="counted"'); [ "$n" = "$last" ] && break; last=$n; sleep 10; done
  sleep 20
  $py bench/mttd/mttd.py report clean "$out/truth-clean.jsonl" "$out/hook-$id.jsonl"
  stop "$id"
fi
