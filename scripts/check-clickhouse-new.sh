#!/usr/bin/env bash
# The schema and every statement the jobs issue, on today's ClickHouse (26.x: the engine of
# PyPI's `chdb-core`, in process), answered exactly as Debian's 18.16 answers them.
#
#  1. The jobs run once, as in the quickstart, against the replicated cluster of
#     scripts/clickhouse-cluster.sh (ClickHouse 18.16; its profile logs every query in
#     `system.query_log`) and an api-sandbox with a pinned clock: migrate, QTickets twice (the
#     second run recomputes the dates a day of new orders and refunds touched), VK Ads and
#     Direct (their `zero_stale`), Gmail, alerts, `healthcheck --once`.
#  2. scripts/check_clickhouse_new.py applies the migrations' own text
#     (`cargo run --example schema_sql`) to chdb-core, checks every table's columns against
#     18.16's, copies the data over, and compares with 18.16: every view, and every captured
#     statement (reads as they were sent; `INSERT … SELECT` — recomputes, `zero_stale` — by
#     its SELECT). Statements about the server itself (`system.*`, `remote()`, DDL) are not
#     replayed: the schema is checked from the migrations instead.
#
#   bash scripts/check-clickhouse-new.sh     # exits 1 on any difference; starts the cluster
#                                            # when it is down (and stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import chdb' 2>/dev/null ||
    { echo "check-clickhouse-new: chdb-core is missing (scripts/setup.sh installs it)" >&2; exit 1; }
for bin in api-sandbox manage-timers ingest-qtickets ingest-vk ingest-direct ingest-gmail alerts healthcheck; do
    [ -x "target/debug/$bin" ] || { echo "check-clickhouse-new: build the workspace first (target/debug/$bin)" >&2; exit 1; }
done

state=$(mktemp -d /tmp/zakaz-check-clickhouse-new.XXXXXX)
started=$(bash scripts/clickhouse-cluster.sh down)
DB="zakaz_chdb_check_$(date +%s)_$$"
R1=http://127.0.0.1:8124
sandbox_pid=
cleanup() {
    [ -z "$sandbox_pid" ] || kill "$sandbox_pid" 2>/dev/null || true
    for url in $(bash scripts/clickhouse-cluster.sh urls | tr ',' ' '); do
        curl -fsS "$url/" --data-binary "DROP DATABASE IF EXISTS \`$DB\`" >/dev/null 2>&1 || true
    done
    # shellcheck disable=SC2086 # a list of parts
    [ -z "$started" ] || bash scripts/clickhouse-cluster.sh stop $started >/dev/null
    rm -rf "$state"
}
trap cleanup EXIT
[ -z "$started" ] || bash scripts/clickhouse-cluster.sh start >/dev/null

echo "==> the jobs against ClickHouse 18.16 (cluster replica 1, queries logged), database $DB"
NOW=2026-11-25T18:30:00Z
NEXT=2026-11-26T18:30:00Z
target/debug/api-sandbox --listen 127.0.0.1:0 --now "$NOW" >"$state/urls.json" 2>"$state/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 1 100); do [ -s "$state/urls.json" ] && break; sleep 0.1; done
base=$(sed -n 's/.*"base_url":"\([^"]*\)".*/\1/p' "$state/urls.json")
[ -n "$base" ] || { echo "check-clickhouse-new: api-sandbox did not start: $(cat "$state/sandbox.log")" >&2; exit 1; }

run() { # what command...
    local what=$1 t0=$SECONDS
    shift
    if ! env -i PATH="$PATH" LOG_LEVEL=warn \
        CLICKHOUSE_URL="$(bash scripts/clickhouse-cluster.sh urls)" CLICKHOUSE_CLUSTER=zakaz CLICKHOUSE_DB="$DB" \
        QTICKETS_BASE_URL="$base/qtickets/api/rest/v1" QTICKETS_TOKEN=sandbox-token QTICKETS_BACKFILL_DAYS=40 \
        VK_ADS_BASE_URL="$base/vk" VK_ADS_CLIENT_ID=sandbox-client VK_ADS_CLIENT_SECRET=sandbox-secret \
        VK_ADS_STATE_DIR="$state" \
        DIRECT_API_URL="$base/direct/json/v5" DIRECT_TOKEN=sandbox-token DIRECT_LOGINS=client-a,client-b \
        GMAIL_API_URL="$base/gmail" GOOGLE_TOKEN_URL="$base/google/token" GMAIL_CLIENT_ID=sandbox-client \
        GMAIL_CLIENT_SECRET=sandbox-secret GMAIL_REFRESH_TOKEN=sandbox-refresh \
        TELEGRAM_API_URL="$base/telegram" TELEGRAM_BOT_TOKEN=sandbox-token TELEGRAM_CHAT_ID=-100123 \
        ALERTS_STATE_DIR="$state" SYSTEMD_UNIT_DIRS=/nonexistent \
        "$@" >"$state/$what.log" 2>&1; then
        echo "check-clickhouse-new: $what failed:" >&2
        tail -5 "$state/$what.log" >&2
        exit 1
    fi
    echo "    $what: $((SECONDS - t0)) s"
}
since=$(curl -fsS "$R1/" --data-binary "SELECT toUnixTimestamp(now())")
run migrate target/debug/manage-timers migrate
run qtickets target/debug/ingest-qtickets --now "$NOW"
curl -fsS "$base/_sandbox/advance" -H 'Content-Type: application/json' -d '{"days": 1}' >/dev/null
run qtickets2 target/debug/ingest-qtickets --now "$NEXT"
run vk target/debug/ingest-vk --now "$NEXT"
run direct target/debug/ingest-direct --now "$NEXT"
run gmail target/debug/ingest-gmail --now "$NEXT"
run alerts target/debug/alerts --now "$NEXT"
# `--once` exits 1 when something is wrong (here: jobs never run, such as the queue): fine.
run healthcheck bash -c 'target/debug/healthcheck --once || [ $? = 1 ]'

curl -fsS "$R1/" --data-binary "SYSTEM FLUSH LOGS"
# Every statement the binaries sent (the crate's user agent), finished, since the start.
curl -fsS "$R1/" --data-binary "SELECT DISTINCT query FROM system.query_log
    WHERE type = 2 AND is_initial_query AND event_time >= toDateTime($since)
      AND startsWith(http_user_agent, 'clickhouse-rs/')
    FORMAT JSONEachRow" >"$state/queries.jsonl"

echo "==> the same schema, data and statements on chdb-core, compared"
cargo run --quiet -p zakaz-core --example schema_sql >"$state/schema.json"
python3 scripts/check_clickhouse_new.py --url "$R1" --db "$DB" \
    --schema "$state/schema.json" --queries "$state/queries.jsonl" --work "$state/chdb"
