#!/usr/bin/env bash
# Benchmarks; each prints its numbers and a ratio against a baseline measured in the same run.
# Results are recorded in docs/performance.md. Usage: scripts/bench.sh [sandbox|qtickets|incremental|vk|direct|gmail|healthcheck|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

if [ "$what" = sandbox ] || [ "$what" = all ]; then
    echo "==> api-sandbox: QTickets order pages"
    cargo bench -q -p api-sandbox --bench serve
fi

if [ "$what" = qtickets ] || [ "$what" = all ]; then
    echo "==> ingest-qtickets: backfill of ~100 000 orders"
    cargo build -q --release -p ingest-qtickets -p api-sandbox
    cargo bench -q -p ingest-qtickets --bench backfill
fi

if [ "$what" = incremental ] || [ "$what" = all ]; then
    echo "==> ingest-qtickets: incremental runs after 1 vs 12 months of staged history"
    cargo build -q --release -p ingest-qtickets -p api-sandbox
    cargo bench -q -p ingest-qtickets --bench incremental
fi

if [ "$what" = vk ] || [ "$what" = all ]; then
    echo "==> ingest-vk: banner-day statistics vs a plain bulk insert of the same rows"
    cargo build -q --release -p ingest-vk -p api-sandbox
    cargo bench -q -p ingest-vk --bench load
fi

if [ "$what" = direct ] || [ "$what" = all ]; then
    echo "==> ingest-direct: a ~100 MB report vs fetching the same bytes and a plain bulk insert"
    cargo build -q --release -p ingest-direct -p api-sandbox
    cargo bench -q -p ingest-direct --bench report
fi

if [ "$what" = gmail ] || [ "$what" = all ]; then
    echo "==> ingest-gmail: CSV and XLSX report parsing vs reading the same bytes"
    cargo bench -q -p ingest-gmail --bench parse
fi

if [ "$what" = healthcheck ] || [ "$what" = all ]; then
    echo "==> healthcheck: wrk against cached endpoints vs a tiny_http hello-world"
    bash scripts/bench-healthcheck.sh
fi
