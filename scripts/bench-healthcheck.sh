#!/usr/bin/env bash
# healthcheck under wrk: req/s and p99 of /healthz, /healthz/detailed and /metrics (answers
# cached, as probes see them) as a ratio to a minimal tiny_http hello-world with the same
# threads, on the same machine, in the same run. A warm-up first; then ROUNDS rounds, each
# target once per round in a rotating order; median and spread (min–max) per figure.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
CONNECTIONS=${CONNECTIONS:-32}
CLICKHOUSE_URL=${CLICKHOUSE_URL:-http://127.0.0.1:8123}
DB=zakaz_bench_health_$$

command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk; scripts/setup.sh does)" >&2; exit 1; }
cargo build -q --release -p healthcheck --bin healthcheck --example hello

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
q() { curl -fsS "$CLICKHOUSE_URL/" --data-binary "$1" >/dev/null; }

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    curl -fsS "$CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz/live" 2>/dev/null && return 0
        curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing answers on port $1" >&2
    exit 1
}

hello_port=$(free_port)
target/release/examples/hello "127.0.0.1:$hello_port" 4 &
pids+=($!)
health_port=$(free_port)
CLICKHOUSE_URL=$CLICKHOUSE_URL CLICKHOUSE_DB=$DB HEALTHCHECK_LISTEN=127.0.0.1:$health_port \
    HEALTHCHECK_THREADS=4 HEALTHCHECK_CACHE_SECONDS=5 SYSTEMD_UNIT_DIRS=/nonexistent \
    LOG_LEVEL=warn target/release/healthcheck &
pids+=($!)
wait_port "$hello_port"
wait_port "$health_port"
# A journal like a week of production: 15-minute qtickets runs, nightly loaders, alerts.
curl -fsS -o /dev/null "http://127.0.0.1:$health_port/healthz"
q "INSERT INTO $DB.meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid)
   SELECT j, concat(j, toString(n)), s, if(s = 0, 'running', 'ok'), now() - n * iv, now() - n * iv + 20, now() - n * iv + 300, 100, 'fine', '{}', 'bench', 1
   FROM (SELECT p.1 AS j, p.2 AS iv, arrayJoin(range(toUInt64(intDiv(7 * 86400, iv)))) AS n
         FROM (SELECT arrayJoin([('qtickets', 900), ('vk_ads', 86400), ('direct', 86400), ('alerts', 7200)]) AS p))
   ARRAY JOIN [0, 1] AS s"
q "INSERT INTO $DB.fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, _version) SELECT toDate(now(), 'Europe/Moscow') - number % 30, number, 'Москва', 1, 1 FROM numbers(10000)"

targets=(hello healthz detailed metrics)
declare -A url=(
    [hello]="http://127.0.0.1:$hello_port/"
    [healthz]="http://127.0.0.1:$health_port/healthz"
    [detailed]="http://127.0.0.1:$health_port/healthz/detailed"
    [metrics]="http://127.0.0.1:$health_port/metrics"
)
declare -A rps p99

# One wrk run: "REQ_PER_SEC P99_MS".
run() {
    local out
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$1")
    local r p
    r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
    echo "$r $p"
}

echo "warm-up"
for t in "${targets[@]}"; do wrk -t2 -c"$CONNECTIONS" -d1s "${url[$t]}" >/dev/null; done
for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < ${#targets[@]}; i++)); do
        t=${targets[$(((i + round) % ${#targets[@]}))]}
        read -r r p < <(run "${url[$t]}")
        rps[$t]+="$r "
        p99[$t]+="$p "
    done
done

# `bench healthcheck <figure> <median> (<min>–<max>) n=<n>`, as every benchmark prints; a
# ratio is taken round by round (both sides measured in the same round), then summarised.
show() { # figure decimals values...
    local figure=$1 decimals=$2
    shift 2
    printf '%s\n' "$@" | sort -g | awk -v f="$figure" -v d="$decimals" '{a[NR] = $1} END {
        printf "bench healthcheck %s %.*f (%.*f–%.*f) n=%d\n", f, d, a[int((NR + 1) / 2)], d, a[1], d, a[NR], NR
    }'
}
read -ra hello <<<"${rps[hello]}"
for t in "${targets[@]}"; do
    read -ra mine <<<"${rps[$t]}"
    read -ra lat <<<"${p99[$t]}"
    show "${t}_req_per_s" 0 "${mine[@]}"
    show "${t}_p99_ms" 2 "${lat[@]}"
    [ "$t" = hello ] && continue
    ratios=()
    for ((r = 0; r < ROUNDS; r++)); do
        ratios+=("$(awk -v a="${mine[$r]}" -v b="${hello[$r]}" 'BEGIN {print a / b}')")
    done
    show "${t}_vs_hello" 3 "${ratios[@]}"
done
echo "($ROUNDS rounds of ${SECONDS_PER_RUN}s, $CONNECTIONS connections, 2 wrk threads; a ratio is req/s over the hello-world's in the same round)"
