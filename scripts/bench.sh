#!/usr/bin/env bash
# Benchmarks; each prints its numbers and a ratio against a baseline measured in the same run.
# Results are recorded in docs/performance.md. Usage: scripts/bench.sh [sandbox|qtickets|incremental|vk|direct|gmail|queue|healthcheck|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

# bench NAME "what it measures" PACKAGE BENCH [RELEASE-BINARY-PACKAGE...]: the binaries a
# benchmark drives are rebuilt first, so it never measures a stale one.
bench() {
    local name=$1 title=$2 package=$3 target=$4
    shift 4
    [ "$what" = "$name" ] || [ "$what" = all ] || return 0
    echo "==> $title"
    for built in "$@"; do cargo build -q --release -p "$built"; done
    cargo bench -q -p "$package" --bench "$target"
}

bench sandbox "api-sandbox: QTickets order pages" api-sandbox serve
bench qtickets "ingest-qtickets: backfill of ~100 000 orders" \
    ingest-qtickets backfill ingest-qtickets api-sandbox
bench incremental "ingest-qtickets: incremental runs after 1 vs 12 months of staged history" \
    ingest-qtickets incremental ingest-qtickets api-sandbox
bench vk "ingest-vk: banner-day statistics vs a plain bulk insert of the same rows" \
    ingest-vk load ingest-vk api-sandbox
bench direct "ingest-direct: a ~100 MB report vs fetching the same bytes and a plain bulk insert" \
    ingest-direct report ingest-direct api-sandbox
bench gmail "ingest-gmail: CSV and XLSX report parsing vs reading the same bytes" \
    ingest-gmail parse

if [ "$what" = queue ] || [ "$what" = all ]; then
    # The shard lives on an extra MariaDB server, as in a real deployment.
    bash scripts/mariadb-shards.sh start >/dev/null
fi
bench queue "camp-queue: jobs/s with 1, 2, 4 workers; a client's 100 000-copy backlog vs 100" \
    camp-queue queue camp-queue

if [ "$what" = healthcheck ] || [ "$what" = all ]; then
    echo "==> healthcheck: wrk against cached endpoints vs a tiny_http hello-world"
    bash scripts/bench-healthcheck.sh
fi
