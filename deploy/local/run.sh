#!/usr/bin/env bash
# The main job (README): start the local Kafka-protocol broker and ClickHouse engine (installing
# what is missing), build Flywheel and run every service in one process until ctrl-c.
# Extra arguments are passed to `flywheel all` (e.g. --config deploy/flywheel.example.toml).
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(deploy/local/services.sh up)"
deploy/local/duckdb.sh >/dev/null  # the prebuilt libduckdb the embedded store links (adr/0009)
cargo build --release --locked --bin flywheel
export FLYWHEEL_KAFKA__BROKERS=${FLYWHEEL_KAFKA__BROKERS:-$KAFKA_BROKERS}
echo "OTLP/gRPC on :4317, OTLP/HTTP on :4318, metrics and health on :8888 (ctrl-c to stop)" >&2
exec target/release/flywheel all "$@"
