#!/usr/bin/env bash
# The test command (README, .ci/run): installs and starts the local services it needs
# (deploy/local/services.sh), then checks formatting and lints and runs every test, unit,
# integration and end to end, against the real broker and ClickHouse engine.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== local services"
eval "$(deploy/local/services.sh up)"
deploy/local/duckdb.sh >/dev/null  # the prebuilt libduckdb the embedded store links (adr/0009)
export KAFKA_BROKERS CLICKHOUSE_URL FLYWHEEL_VENV ALERTMANAGER_BIN

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --workspace --all-targets
