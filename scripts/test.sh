#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, then all tests against the real
# local ClickHouse and MariaDB (run scripts/setup.sh once first), two extra MariaDB servers
# for the queue's shards (started here, stopped at the end) and a real systemd.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo build (the end-to-end tests run the real binaries)"
cargo build --workspace --quiet
echo "==> extra MariaDB servers for the queue's shards"
bash scripts/mariadb-shards.sh start
trap 'bash scripts/mariadb-shards.sh stop' EXIT
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
