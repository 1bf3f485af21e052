#!/usr/bin/env bash
# Set up the machine and run the whole system once. Where no credentials are configured
# (QTICKETS_TOKEN, VK_ADS_CLIENT_ID, DIRECT_TOKEN, GMAIL_REFRESH_TOKEN, TELEGRAM_BOT_TOKEN
# unset) the jobs talk to a local api-sandbox and write to the database `zakaz_sandbox`, never
# to `zakaz`. Prints the run journal, facts, daily sales by source, spend against sales and
# alerts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

CH=${CLICKHOUSE_URL:-http://127.0.0.1:8123}
workdir=$(mktemp -d)
sandbox_pid=""
cleanup() {
    [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
    rm -rf "$workdir"
}
trap cleanup EXIT

if [ -z "${QTICKETS_TOKEN:-}" ] || [ -z "${TELEGRAM_BOT_TOKEN:-}" ] \
    || [ -z "${VK_ADS_CLIENT_ID:-}" ] || [ -z "${DIRECT_TOKEN:-}" ] \
    || [ -z "${GMAIL_REFRESH_TOKEN:-}" ]; then
    echo "==> starting api-sandbox (no credentials configured)"
    target/debug/api-sandbox --listen 127.0.0.1:0 >"$workdir/urls.json" 2>"$workdir/sandbox.log" &
    sandbox_pid=$!
    for _ in $(seq 1 100); do [ -s "$workdir/urls.json" ] && break; sleep 0.1; done
    base=$(sed -n 's/.*"base_url":"\([^"]*\)".*/\1/p' "$workdir/urls.json")
    [ -n "$base" ] || { echo "api-sandbox did not start: $(cat "$workdir/sandbox.log")" >&2; exit 1; }
    echo "    $base"
    export CLICKHOUSE_DB=${CLICKHOUSE_DB:-zakaz_sandbox}
    if [ -z "${QTICKETS_TOKEN:-}" ]; then
        export QTICKETS_BASE_URL="$base/qtickets/api/rest/v1" QTICKETS_TOKEN=sandbox-token
    fi
    if [ -z "${VK_ADS_CLIENT_ID:-}" ]; then
        export VK_ADS_BASE_URL="$base/vk" VK_ADS_CLIENT_ID=sandbox-client \
            VK_ADS_CLIENT_SECRET=sandbox-secret VK_ADS_STATE_DIR="$workdir/vk-state"
    fi
    if [ -z "${DIRECT_TOKEN:-}" ]; then
        export DIRECT_API_URL="$base/direct/json/v5" DIRECT_TOKEN=sandbox-token \
            DIRECT_LOGINS=client-a,client-b
    fi
    if [ -z "${GMAIL_REFRESH_TOKEN:-}" ]; then
        export GMAIL_API_URL="$base/gmail" GOOGLE_TOKEN_URL="$base/google/token" \
            GMAIL_CLIENT_ID=sandbox-client GMAIL_CLIENT_SECRET=sandbox-secret \
            GMAIL_REFRESH_TOKEN=sandbox-refresh
    fi
    if [ -z "${TELEGRAM_BOT_TOKEN:-}" ]; then
        export TELEGRAM_API_URL="$base/telegram" TELEGRAM_BOT_TOKEN=sandbox-token TELEGRAM_CHAT_ID=-100123
    fi
fi
DB=${CLICKHOUSE_DB:-zakaz}
target/debug/manage-timers migrate

echo "==> the job table"
target/debug/manage-timers list

echo "==> qtickets: sales, events, inventory"
target/debug/ingest-qtickets
echo "==> vk_ads: yesterday's VK Ads statistics (and the 3 days before)"
target/debug/ingest-vk
echo "==> direct: yesterday's Yandex Direct statistics (and the 3 days before)"
target/debug/ingest-direct
echo "==> gmail_ingest: sales report mails (the backup channel; its timer is off by default)"
target/debug/ingest-gmail
echo "==> alerts: checks and notices"
target/debug/alerts || echo "    (alerts reported a failure above)"

q() { curl -fsS "$CH/" --data-binary "$1 FORMAT PrettyCompactNoEscapes"; }
echo "==> the run journal ($DB.meta_job_runs)"
q "SELECT job, status, rows_processed, started_at, substring(message, 1, 90) AS message FROM $DB.meta_job_runs ORDER BY started_at DESC LIMIT 10"
echo "==> sales per day, last 7 days ($DB.fact_qtickets_sales_daily)"
q "SELECT sales_date, sum(tickets_sold) AS tickets, sum(revenue) AS revenue, sum(refunds) AS refunds, sum(net_revenue) AS net, sum(orders) AS orders FROM $DB.fact_qtickets_sales_daily FINAL GROUP BY sales_date ORDER BY sales_date DESC LIMIT 7"
echo "==> daily sales with their source, last 7 days ($DB.v_sales_daily)"
q "SELECT date, source, sum(tickets_sold) AS tickets, sum(net_revenue) AS net FROM $DB.v_sales_daily GROUP BY date, source ORDER BY date DESC LIMIT 7"
echo "==> spend against sales, yesterday ($DB.v_marketing_daily)"
q "SELECT * FROM $DB.v_marketing_daily WHERE date = toDate(now(), 'Europe/Moscow') - 1 ORDER BY city, source"
echo "==> data freshness ($DB.v_data_freshness)"
q "SELECT * FROM $DB.v_data_freshness ORDER BY source"
echo "==> alerts ($DB.alerts)"
q "SELECT created_at, alert_type, job, state, title, channels FROM $DB.alerts ORDER BY created_at DESC LIMIT 10"
