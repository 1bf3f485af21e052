#!/usr/bin/env bash
# Set up the machine and run the whole system once, against `api-sandbox` where no
# credentials are configured. Prints the run journal at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> the job table"
target/debug/manage-timers list

echo "==> the run journal (zakaz.meta_job_runs)"
curl -fsS "${CLICKHOUSE_URL:-http://127.0.0.1:8123}/" --data-binary \
    "SELECT job, status, rows_processed, started_at, message FROM ${CLICKHOUSE_DB:-zakaz}.meta_job_runs ORDER BY started_at DESC LIMIT 10 FORMAT PrettyCompact"
