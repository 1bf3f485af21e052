#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, then all tests against the real
# local ClickHouse and MariaDB (run scripts/setup.sh once first), two extra MariaDB servers
# for the queue's shards (started here when not already running, and then stopped at the
# end; servers someone else started are left alone) and a real systemd. Then a second pass
# with the clock moved ZAKAZ_SHIFT_DAYS (default 40) days ahead (libfaketime on the test
# binaries): no test may depend on today's date. ZAKAZ_SHIFT_DAYS=0 skips that pass.
#
#   bash scripts/test.sh                  # everything
#   bash scripts/test.sh -p ingest-vk     # arguments go to `cargo nextest run` (both passes)
set -euo pipefail
cd "$(dirname "$0")/.."
SHIFT_DAYS=${ZAKAZ_SHIFT_DAYS:-40}

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo build (the end-to-end tests run the real binaries)"
cargo build --workspace --quiet
echo "==> extra MariaDB servers for the queue's shards"
ours=$(bash scripts/mariadb-shards.sh down)
bash scripts/mariadb-shards.sh start
if [ -n "$ours" ]; then
    # shellcheck disable=SC2086 # a list of ports
    trap "bash scripts/mariadb-shards.sh stop $ours" EXIT
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test: cargo-nextest is missing (scripts/setup.sh installs it)" >&2
    exit 1
fi
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
if [ "$SHIFT_DAYS" != 0 ]; then
    echo "==> tests with the clock $SHIFT_DAYS days ahead (libfaketime)"
    ZAKAZ_SHIFT_DAYS=$SHIFT_DAYS \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/faketime-runner.sh" \
        cargo nextest run --workspace --no-fail-fast "$@"
fi
