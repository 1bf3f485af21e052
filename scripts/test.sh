#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, then all tests against the real
# local ClickHouse and MariaDB (run scripts/setup.sh once first), two extra MariaDB servers
# for the queue's shards and the replicated ClickHouse cluster of
# scripts/clickhouse-cluster.sh (each started here when not already running, and then
# stopped at the end; servers someone else started are left alone) and a real systemd. Then a
# second pass with the clock moved ZAKAZ_SHIFT_DAYS (default 40) days ahead (libfaketime on
# the test binaries): no test may depend on today's date. ZAKAZ_SHIFT_DAYS=0 skips that pass.
# Last (without arguments), scripts/check-clickhouse-new.sh: the schema and the jobs'
# statements on ClickHouse 26.x (chdb-core) answer as on 18.16.
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
echo "==> the replicated ClickHouse cluster (ZooKeeper, two replicas)"
ours_cluster=$(bash scripts/clickhouse-cluster.sh down)
# Started here: from empty, whatever an earlier (perhaps killed) run left in its directory.
if [ "$ours_cluster" = "$(bash scripts/clickhouse-cluster.sh parts)" ]; then
    bash scripts/clickhouse-cluster.sh start --fresh
else
    bash scripts/clickhouse-cluster.sh start
fi
stop_ours() {
    # shellcheck disable=SC2086 # lists of ports and parts
    [ -z "$ours_cluster" ] || bash scripts/clickhouse-cluster.sh stop $ours_cluster
    # shellcheck disable=SC2086
    [ -z "$ours" ] || bash scripts/mariadb-shards.sh stop $ours
}
trap stop_ours EXIT
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test: cargo-nextest is missing (scripts/setup.sh installs it)" >&2
    exit 1
fi
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
if [ "$SHIFT_DAYS" != 0 ]; then
    echo "==> tests with the clock $SHIFT_DAYS days ahead (libfaketime)"
    # The cluster's tests (replication, failover, leases: `cluster::`) pin their instants or
    # run in the e2e machines' real clock; they run once, in the pass above.
    ZAKAZ_SHIFT_DAYS=$SHIFT_DAYS \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/faketime-runner.sh" \
        cargo nextest run --workspace --no-fail-fast -E 'not test(/^cluster::/)' "$@"
fi
if [ $# = 0 ]; then
    echo "==> the schema and the jobs' statements on ClickHouse 26.x (chdb-core) against 18.16"
    bash scripts/check-clickhouse-new.sh
fi
