#!/usr/bin/env bash
# Dataset export benchmark: `flywheel export` (release build) on a table of ROWS model calls.
#  1. A scratch database bench_export_<time> gets ROWS llm_calls rows from one
#     INSERT ... SELECT FROM numbers(ROWS): ~1.4 KB prompt (system + user message, semconv parts)
#     and ~0.6 KB completion per call, 1000 conversations per model, 4 models, an email in one
#     prompt of 50; plus ROWS/20 thumbs feedback rows and ROWS/50 copy signals.
#  2. Times `flywheel export` for sft and eval, to JSONL and to Parquet, printing rows/s, output
#     size, the exporter's own CPU seconds and peak RSS (GNU time); ClickHouse (the local
#     engine) runs on the same 2 cores and is included in the wall time, not in the CPU.
#
# usage: bench/export.sh [ROWS=1000000] [KEEP=0 (1 keeps the database)]
#        env SHAPES="sft eval" FORMATS="jsonl parquet" PAGE_SIZE=2000 (calls per query)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000} keep=${2:-0}

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
eval "$(deploy/local/services.sh up)"
cargo build --release --locked -q
bin=$PWD/target/release/flywheel
out=target/bench/export; mkdir -p "$out"
db=bench_export_$(date +%s)
export FLYWHEEL_CLICKHOUSE__URL=$CLICKHOUSE_URL FLYWHEEL_CLICKHOUSE__DATABASE=$db RUST_LOG=warn
ch() { curl -fsS "$CLICKHOUSE_URL/?database=$db" --data-binary "$1"; }
cleanup() { [ "$keep" = 1 ] || curl -fsS "$CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null || true; }
trap cleanup EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); rows=$rows database=$db page_size=${PAGE_SIZE:-2000}"

"$bin" migrate >/dev/null
t0=$(date +%s.%N)
ch "INSERT INTO llm_calls (timestamp, project, trace_id, span_id, model, provider, operation,
      conversation_id, user_id, input_messages, output_messages)
    SELECT fromUnixTimestamp64Nano(toInt64(1794700800000000000 + number * 1000000000)), 'bench',
      lower(hex(MD5(toString(number)))), lower(hex(toUInt64(number))),
      ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4', 'gemini-2.5-flash'][number % 4 + 1], 'openai', 'chat',
      concat('conv-', toString(number % 4000)), concat('user-', toString(number % 997)),
      concat('[{\"role\":\"system\",\"parts\":[{\"type\":\"text\",\"content\":\"You are a helpful assistant for an online store. ',
             repeat('Answer politely and cite the order policy. ', 12), '\"}]},',
             '{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"Question ', toString(number), ': ',
             repeat('where is my order and when will it arrive? ', 18),
             if(number % 50 = 0, concat(' reach me at buyer', toString(number), '@example.com'), ''), '\"}]}]'),
      concat('[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"Answer ', toString(number), ': ',
             repeat('your parcel left the warehouse today. ', 16), '\"}],\"finish_reason\":\"stop\"}]')
    FROM numbers($rows)"
ch "INSERT INTO feedback (id, project, timestamp, trace_id, span_id, name, value_type, score, source, origin, received_at)
    SELECT concat('fb-', toString(number)), 'bench', now64(9), lower(hex(MD5(toString(number * 20)))),
      lower(hex(toUInt64(number * 20))), 'thumbs', 'boolean', number % 2, 'human', 'api', now64(9)
    FROM numbers(intDiv($rows, 20))"
ch "INSERT INTO signals (id, project, timestamp, trace_id, span_id, type, source, origin, received_at)
    SELECT concat('sig-', toString(number)), 'bench', now64(9), lower(hex(MD5(toString(number * 50)))),
      lower(hex(toUInt64(number * 50))), 'copy', 'api', 'api', now64(9)
    FROM numbers(intDiv($rows, 50))"
t1=$(date +%s.%N)
echo "generated: $(ch "SELECT count() FROM llm_calls") calls, $(ch "SELECT count() FROM feedback") feedback, $(ch "SELECT count() FROM signals") signals in $(echo "$t1 - $t0" | bc) s; llm_calls on disk: $(ch "SELECT formatReadableSize(sum(bytes_on_disk)) FROM system.parts WHERE database = '$db' AND table = 'llm_calls' AND active")"

for shape in ${SHAPES:-sft eval}; do
  for format in ${FORMATS:-jsonl parquet}; do
    file=$out/$shape.$format
    cmd=("$bin" export --project bench --shape "$shape" --format "$format" --page-size "${PAGE_SIZE:-2000}" --quiet -o "$file")
    /usr/bin/time -f "%e %M %U %S" -o "$out/time" "${cmd[@]}" 2>"$out/report"
    read -r secs rss_kb usr sys <"$out/time"
    written=$(grep -o 'rows_written=[0-9]*' "$out/report" | cut -d= -f2)
    printf '%-5s %-8s rows=%s seconds=%s rows_per_s=%s exporter_cpu_s=%s size=%s peak_rss=%s MiB | %s\n' \
      "$shape" "$format" "$written" "$secs" "$(echo "$written / $secs" | bc)" "$(echo "$usr + $sys" | bc)" \
      "$(du -h "$file" | cut -f1)" "$((rss_kb / 1024))" "$(grep -o 'redacted_email=[0-9]*' "$out/report")"
  done
done
echo "command: ${cmd[*]/$out\/eval.parquet/FILE} (per shape and format)"
