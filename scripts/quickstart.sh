#!/usr/bin/env bash
# Set up the machine and run the whole system once: `bash scripts/quickstart.sh` (as root, or
# as a user with sudo). Where no credentials are configured (QTICKETS_TOKEN, VK_ADS_CLIENT_ID,
# DIRECT_TOKEN, GMAIL_REFRESH_TOKEN, TELEGRAM_BOT_TOKEN unset) the jobs talk to a local
# api-sandbox and write to the database `zakaz_sandbox`, never to `zakaz`. Every job runs
# once (one line each), the healthcheck keeps serving, and a summary follows. Run it again:
# the same result. `--stop` stops what it started.
#
# `--cluster`: the same on a replicated ClickHouse cluster (scripts/clickhouse-cluster.sh:
# ZooKeeper and two replicas of one shard on this machine, started here when they are not
# running): the schema is created `ON CLUSTER` with Replicated tables, the jobs write through
# replica 1 (replica 2 when 1 is down) and take their leases in ZooKeeper, and the summary
# shows every table's rows on both replicas.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/target/quickstart"
mkdir -p "$state"

stop() {
    local pid
    for name in healthcheck api-sandbox; do
        if [ -f "$state/$name.pid" ]; then
            pid=$(cat "$state/$name.pid")
            if kill "$pid" 2>/dev/null; then
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                echo "stopped $name (pid $pid)"
            fi
            rm -f "$state/$name.pid"
        fi
    done
    # The queue's extra MariaDB servers, when this script started them.
    if [ -f "$state/mariadb-shards.started" ]; then
        bash scripts/mariadb-shards.sh stop
        rm -f "$state/mariadb-shards.started"
    fi
    # The ClickHouse cluster's parts this script started (`--cluster`).
    if [ -f "$state/clickhouse-cluster.started" ]; then
        # shellcheck disable=SC2046 # a list of parts
        bash scripts/clickhouse-cluster.sh stop $(cat "$state/clickhouse-cluster.started")
        rm -f "$state/clickhouse-cluster.started"
    fi
}

cluster=
case "${1:-}" in
--stop)
    stop
    exit 0
    ;;
--cluster) cluster=1 ;;
"") ;;
*) echo "usage: $0 [--cluster|--stop]" >&2; exit 64 ;;
esac
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "quickstart: run it as root (installs need it)" >&2; exit 1; }
    exec sudo --preserve-env bash "$0" "$@"
fi

bash scripts/setup.sh
stop >/dev/null # a previous round's services

# The campaign queue's shards live on three MariaDB servers: the system one and two more.
if ! mariadb-admin --no-defaults -h127.0.0.1 -P3316 -uroot ping >/dev/null 2>&1; then
    touch "$state/mariadb-shards.started"
fi
bash scripts/mariadb-shards.sh start >/dev/null

if [ -n "$cluster" ]; then
    echo "==> the replicated ClickHouse cluster (scripts/clickhouse-cluster.sh)"
    down=$(bash scripts/clickhouse-cluster.sh down)
    if [ -n "$down" ]; then
        # Remember what this script starts (added to what an earlier round started).
        echo "$down $(cat "$state/clickhouse-cluster.started" 2>/dev/null || true)" |
            tr ' ' '\n' | grep . | sort -u | tr '\n' ' ' >"$state/clickhouse-cluster.started"
    fi
    bash scripts/clickhouse-cluster.sh start | sed 's/^/    /'
    eval "export $(bash scripts/clickhouse-cluster.sh env | tr '\n' ' ')"
fi
CH=${CLICKHOUSE_URL:-http://127.0.0.1:8123}
CH=${CH%%,*} # the summary reads replica 1 (the first URL)
export LOG_LEVEL=${LOG_LEVEL:-warn}
if [ -z "${QTICKETS_TOKEN:-}" ] || [ -z "${TELEGRAM_BOT_TOKEN:-}" ] \
    || [ -z "${VK_ADS_CLIENT_ID:-}" ] || [ -z "${DIRECT_TOKEN:-}" ] \
    || [ -z "${GMAIL_REFRESH_TOKEN:-}" ]; then
    echo "==> starting api-sandbox (no credentials configured)"
    target/debug/api-sandbox --listen 127.0.0.1:0 >"$state/urls.json" 2>"$state/sandbox.log" &
    echo $! >"$state/api-sandbox.pid"
    for _ in $(seq 1 100); do [ -s "$state/urls.json" ] && break; sleep 0.1; done
    base=$(sed -n 's/.*"base_url":"\([^"]*\)".*/\1/p' "$state/urls.json")
    [ -n "$base" ] || { echo "api-sandbox did not start: $(cat "$state/sandbox.log")" >&2; exit 1; }
    echo "    $base"
    export CLICKHOUSE_DB=${CLICKHOUSE_DB:-zakaz_sandbox}
    if [ -z "${QTICKETS_TOKEN:-}" ]; then
        export QTICKETS_BASE_URL="$base/qtickets/api/rest/v1" QTICKETS_TOKEN=sandbox-token
    fi
    if [ -z "${VK_ADS_CLIENT_ID:-}" ]; then
        export VK_ADS_BASE_URL="$base/vk" VK_ADS_CLIENT_ID=sandbox-client \
            VK_ADS_CLIENT_SECRET=sandbox-secret VK_ADS_STATE_DIR="$state/vk-state"
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
    export ALERTS_STATE_DIR="$state/alerts-state"
    mkdir -p "$ALERTS_STATE_DIR" "$state/vk-state"
fi
if [ -z "${PPCDICT_DSN:-}" ]; then
    # Demo shards: shard 1 on the system server, shards 2 and 3 on the extra ones.
    export PPCDICT_DSN="mysql://root@127.0.0.1:3306/zakaz_sandbox_ppcdict" \
        PPC_SHARD_DSNS="mysql://root@127.0.0.1:3306/zakaz_sandbox_ppc1,mysql://root@127.0.0.1:3316/zakaz_sandbox_ppc2,mysql://root@127.0.0.1:3317/zakaz_sandbox_ppc3"
    queue_demo=1
fi
DB=${CLICKHOUSE_DB:-zakaz}
target/debug/manage-timers migrate >/dev/null

q() { curl -fsS "$CH/" --data-binary "$1 FORMAT PrettyCompactNoEscapes"; }
tsv() { curl -fsS "$CH/" --data-binary "$1 FORMAT TabSeparated"; }

# One line per job: its own verdict from the run journal.
run_job() {
    local job=$1 binary=$2 rc=0
    "target/debug/$binary" >"$state/$job.log" 2>&1 || rc=$?
    local line
    line=$(tsv "SELECT concat(status, ', ', toString(rows_processed), ' rows: ', substring(message, 1, 110)) FROM $DB.meta_job_runs WHERE job = '$job' ORDER BY started_at DESC, run_id LIMIT 1" || true)
    printf '==> %-13s %s\n' "$job" "${line:-exit $rc, see $state/$job.log}"
    [ "$rc" = 0 ] || sed 's/^/      /' "$state/$job.log" | tail -3
}
echo "==> running every job once (logs in $state/<job>.log)"
run_job qtickets ingest-qtickets
run_job vk_ads ingest-vk
run_job direct ingest-direct
run_job gmail_ingest ingest-gmail

# A camp-queue round: demo data, copies (one across servers), archive and deletes, every
# shard's workers once. Demo data is reset first, so a second round gives the same result.
queue_round() {
    local cq=target/debug/camp-queue
    if [ -n "${queue_demo:-}" ]; then
        $cq migrate >/dev/null
        $cq demo-data --clients 6 --campaigns 5 >/dev/null
        $cq enqueue copy --cid 1 --to-client 2 --role client >/dev/null  # shard 1 → shard 2
        $cq enqueue copy --cid 2 --to-client 4 --role client >/dev/null  # within shard 1
        $cq enqueue copy --cid 6 --to-client 3 --role manager >/dev/null # shard 2 → shard 3
        $cq enqueue arc --cid 7 >/dev/null
        $cq enqueue del --cid 4 >/dev/null
        $cq enqueue del --cid 3 >/dev/null # has money: refused
    fi
    local shards shard lane
    shards=$(echo "$PPC_SHARD_DSNS" | tr ',' '\n' | grep -c .)
    for shard in $(seq 1 "$shards"); do
        for lane in copy:1 rest; do
            LOG_LEVEL=info $cq run --shard "$shard" --par-id "$lane" --once
        done
    done
}
rc=0
queue_round >"$state/camp_queue.log" 2>&1 || rc=$?
if [ "$rc" = 0 ]; then
    events=$(grep -oE 'cid=[0-9]+ (done: [a-z]+|rejected)' "$state/camp_queue.log" | awk '{print $NF}' | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
    printf '==> %-13s ok, %s (across %s shards; logs: %s)\n' camp_queue "${events:-nothing queued}" "$(echo "$PPC_SHARD_DSNS" | tr ',' '\n' | grep -c .)" "$state/camp_queue.log"
else
    printf '==> %-13s exit %s, see %s\n' camp_queue "$rc" "$state/camp_queue.log"
    tail -3 "$state/camp_queue.log" | sed 's/^/      /'
fi
run_job alerts alerts

# The healthcheck keeps serving after this script (until `--stop`).
# Another program on the port (an installed healthcheck, a web server) would answer in its
# place: the first free port from HEALTHCHECK_PORT (8080) on is used, and said.
wanted=${HEALTHCHECK_PORT:-8080}
port=$wanted
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 50); do listening "$port" || break; port=$((port + 1)); done
HEALTHCHECK_LISTEN="127.0.0.1:$port" nohup target/debug/healthcheck >"$state/healthcheck.log" 2>&1 &
echo $! >"$state/healthcheck.pid"
health="http://127.0.0.1:$port/healthz/detailed"
for _ in $(seq 1 100); do curl -fsS --max-time 1 "$health" >/dev/null 2>&1 && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$health" || true)
if ! kill -0 "$(cat "$state/healthcheck.pid")" 2>/dev/null; then
    code="nothing: the healthcheck exited, see $state/healthcheck.log"
elif [ "$port" != "$wanted" ]; then
    code="$code (port $wanted is taken by another program)"
fi

echo
echo "==> rows per table ($DB)"
q "SELECT * FROM (
     SELECT 'fact_qtickets_sales_daily' AS table, count() AS rows FROM $DB.fact_qtickets_sales_daily FINAL
     UNION ALL SELECT 'fact_qtickets_sales_utm_daily', count() FROM $DB.fact_qtickets_sales_utm_daily FINAL
     UNION ALL SELECT 'fact_vk_ads_daily', count() FROM $DB.fact_vk_ads_daily FINAL
     UNION ALL SELECT 'fact_direct_daily', count() FROM $DB.fact_direct_daily FINAL
     UNION ALL SELECT 'stg_mail_sales', count() FROM $DB.stg_mail_sales FINAL) ORDER BY table"
if [ -n "$cluster" ]; then
    echo "==> rows per table on each replica ($DB, cluster $CLICKHOUSE_CLUSTER)"
    IFS=, read -r -a replicas <<<"$CLICKHOUSE_URL"
    for url in "${replicas[@]}"; do
        # Each replica has fetched what the others hold (bounded by the server's timeout).
        for t in $(curl -fsS "$url/" --data-binary "SELECT name FROM system.tables WHERE database = '$DB' AND engine LIKE 'Replicated%' FORMAT TabSeparated" 2>/dev/null); do
            curl -fsS "$url/" --data-binary "SYSTEM SYNC REPLICA $DB.$t" >/dev/null 2>&1 || true
        done
    done
    printf '    %-32s' table
    for i in "${!replicas[@]}"; do printf ' %10s' "replica $((i + 1))"; done
    echo
    for t in $(curl -fsS "$CH/" --data-binary "SELECT name FROM system.tables WHERE database = '$DB' AND engine LIKE 'Replicated%' ORDER BY name FORMAT TabSeparated"); do
        printf '    %-32s' "$t"
        for url in "${replicas[@]}"; do
            printf ' %10s' "$(curl -fsS "$url/" --data-binary "SELECT count() FROM $DB.$t" 2>/dev/null || echo down)"
        done
        echo
    done
fi
echo "==> freshness per source ($DB.v_data_freshness)"
q "SELECT * FROM $DB.v_data_freshness ORDER BY source"
echo "==> daily sales with their source, last 7 days ($DB.v_sales_daily)"
q "SELECT date, source, sum(tickets_sold) AS tickets, sum(net_revenue) AS net FROM $DB.v_sales_daily GROUP BY date, source ORDER BY date DESC LIMIT 7"
echo "==> spend against sales, yesterday ($DB.v_marketing_daily)"
q "SELECT * FROM $DB.v_marketing_daily WHERE date = toDate(now(), 'Europe/Moscow') - 1 ORDER BY city, source"
echo "==> campaign queue (target/debug/camp-queue status)"
target/debug/camp-queue status 2>&1 | sed 's/^/    /' || true
echo "==> open alerts ($DB.alerts)"
q "SELECT fingerprint, argMax(state, created_at) AS state, argMax(title, created_at) AS title FROM $DB.alerts GROUP BY fingerprint HAVING state = 'firing'"
echo "==> healthcheck: $health answers HTTP $code (serving until \`bash scripts/quickstart.sh --stop\`)"
if [ -d /run/systemd/system ]; then
    install_cmd=(target/debug/manage-timers install --binaries target/debug --queue-shards 3)
    answer=
    if [ -t 0 ] && [ -t 1 ]; then
        read -r -p "==> systemd runs here: install the timers now (${install_cmd[*]})? [y/N] " answer || answer=
    fi
    if [ "$answer" = y ] || [ "$answer" = Y ]; then
        "${install_cmd[@]}"
    else
        echo "==> systemd runs here: install the timers with"
        echo "      sudo ${install_cmd[*]}"
    fi
    systemctl list-timers --all --no-pager 2>/dev/null | grep -E 'qtickets|vk_ads|direct|gmail|alerts|camp_queue' || true
fi
cat <<EOF
==> next:
      curl -s $health | head -40
      target/debug/manage-timers list            # the job table
      target/debug/ingest-qtickets --help        # every setting (also docs/configuration.md)
      target/debug/camp-queue history --cid 1    # one campaign's story (docs/camp-queue.md)
      bash scripts/quickstart.sh --stop          # stop the healthcheck and the sandbox
EOF
if [ -n "$cluster" ]; then
    cat <<EOF
      bash scripts/clickhouse-cluster.sh stop replica1   # then run a job: it uses replica 2
      bash scripts/clickhouse-cluster.sh start replica1  # it catches up (SYSTEM SYNC REPLICA)
EOF
fi
