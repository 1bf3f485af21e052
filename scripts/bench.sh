#!/usr/bin/env bash
# Benchmarks; each prints its figures, and ratios against baselines measured in the same run,
# one per line in one form:
#
#   bench <name> <figure> <median> (<min>–<max>) n=<n>
#
# Results are recorded in docs/performance.md (quoting these lines).
#
# Usage: scripts/bench.sh [--check] [sandbox|qtickets|incremental|vk|direct|gmail|queue|healthcheck|all]
#   --check  after the run, compare each ratio with its goal (the table below and in
#            docs/performance.md) and exit 1 when one misses it. By hand, never in CI: this
#            machine is shared and noisy, so a miss is a reason to look, then to run again.
# BENCH_REPS sets the repetitions (default 5; the incremental benchmark does at least 9).
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
if [ "${1:-}" = --check ]; then
    check=true
    shift
fi
what=${1:-all}
case $what in
sandbox | qtickets | incremental | vk | direct | gmail | queue | healthcheck | all) ;;
*)
    echo "usage: scripts/bench.sh [--check] [sandbox|qtickets|incremental|vk|direct|gmail|queue|healthcheck|all]" >&2
    exit 64
    ;;
esac

# Goals, as `name figure op bound` (op: >= or <=), checked against the median.
GOALS='
qtickets loader_vs_fetch >= 0.5
qtickets peak_rss_mib <= 64
vk loader_vs_fetch >= 0.8
direct loader_vs_fetch >= 0.5
direct peak_rss_mib <= 16
healthcheck metrics_vs_hello >= 0.8
healthcheck healthz_vs_hello >= 0.93
healthcheck detailed_vs_hello >= 0.84
queue pairs_per_job_1_worker <= 4
queue speedup_4_vs_1_worker >= 3
incremental ratio_12_vs_1_month <= 1.5
incremental ratio_24_vs_1_month <= 1.5
'

out=$(mktemp)
trap 'rm -f "$out"' EXIT

# bench NAME "what it measures" PACKAGE BENCH [RELEASE-BINARY-PACKAGE...]: the binaries a
# benchmark drives are rebuilt first, so it never measures a stale one.
bench() {
    local name=$1 title=$2 package=$3 target=$4
    shift 4
    [ "$what" = "$name" ] || [ "$what" = all ] || return 0
    echo "==> $title ($(uptime | sed 's/.*load average/load average/'))"
    for built in "$@"; do cargo build -q --release -p "$built"; done
    cargo bench -q -p "$package" --bench "$target" | tee -a "$out"
}

bench sandbox "api-sandbox: QTickets order pages" api-sandbox serve
bench qtickets "ingest-qtickets: backfill of ~100 000 orders" \
    ingest-qtickets backfill ingest-qtickets api-sandbox
bench incremental "ingest-qtickets: incremental runs after 1, 12 and 24 months of staged history" \
    ingest-qtickets incremental ingest-qtickets api-sandbox
bench vk "ingest-vk: banner-day statistics vs fetching the same answers and a plain bulk insert" \
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
    echo "==> healthcheck: wrk against cached endpoints vs a tiny_http hello-world ($(uptime | sed 's/.*load average/load average/'))"
    bash scripts/bench-healthcheck.sh | tee -a "$out"
fi

$check || exit 0
echo "==> goals"
failed=0
while read -r name figure op bound; do
    [ -n "$name" ] || continue
    [ "$what" = "$name" ] || [ "$what" = all ] || continue
    median=$(awk -v n="$name" -v f="$figure" '$1 == "bench" && $2 == n && $3 == f {m = $4} END {print m}' "$out")
    if [ -z "$median" ]; then
        echo "MISSING $name $figure (no such line printed)"
        failed=1
        continue
    fi
    if awk -v m="$median" -v b="$bound" -v op="$op" 'BEGIN {exit !((op == ">=") ? (m + 0 >= b + 0) : (m + 0 <= b + 0))}'; then
        echo "ok      $name $figure $median $op $bound"
    else
        echo "MISSED  $name $figure $median (goal $op $bound)"
        failed=1
    fi
done <<<"$GOALS"
exit $failed
