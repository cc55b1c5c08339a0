#!/usr/bin/env bash
# The test command (README, .ci/run): installs and starts the local services it needs
# (deploy/local/services.sh) and the headless browser (deploy/local/browser.sh), then checks
# formatting and lints and runs every test, unit, integration and end to end, against the real
# broker and ClickHouse engine.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== local services"
# The shared test broker uses tansu's SQLite engine (its in-memory engine answered stale
# watermarks and committed offsets to the suite); services.sh restarts it if a panic wedged it.
export FLYWHEEL_KAFKA_STORAGE=${FLYWHEEL_KAFKA_STORAGE:-sqlite}
eval "$(deploy/local/services.sh up)"
deploy/local/duckdb.sh >/dev/null  # the prebuilt libduckdb the embedded store links (adr/0009)
export KAFKA_BROKERS CLICKHOUSE_URL FLYWHEEL_VENV ALERTMANAGER_BIN

echo "== headless browser (status page test)"
eval "$(deploy/local/browser.sh)"
export CHROMIUM_BIN

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --workspace --all-targets
