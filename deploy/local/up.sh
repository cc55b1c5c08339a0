#!/usr/bin/env bash
# The main job (README): build Flywheel and run `flywheel up`: every service in one process with
# nothing external (the embedded write-ahead log and DuckDB, data in ./flywheel-data) until
# ctrl-c. Extra arguments go to `flywheel up` (e.g. --data-dir DIR, --kafka BROKERS,
# --clickhouse URL); `deploy/local/up.sh demo` runs the demo instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/duckdb.sh >/dev/null  # the prebuilt libduckdb the embedded store links (adr/0009)
cargo build --release --locked --bin flywheel
if [ "${1:-}" = demo ]; then shift; exec target/release/flywheel demo "$@"; fi
echo "OTLP/HTTP :4318, OTLP/gRPC :4317, status page http://127.0.0.1:8080/, metrics :8888 (ctrl-c to stop)" >&2
exec target/release/flywheel up "$@"
