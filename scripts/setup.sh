#!/usr/bin/env bash
# Idempotent machine set-up: installs and starts what is missing (ClickHouse from Debian's
# `clickhouse-server`, MariaDB if absent), waits until both answer, installs ZooKeeper and
# chdb-core (for the cluster and the check on ClickHouse 26.x), builds the workspace and
# applies the ClickHouse schema. Safe to run twice. Needs root for the installs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

systemd_running() { [ -d /run/systemd/system ]; }

apt_updated=""
apt_install() {
    [ "$(id -u)" = 0 ] || die "installing $* needs root: run it with sudo"
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Wait up to $2 seconds for command $1 to succeed.
wait_for() {
    local what=$1 seconds=$2 i
    for ((i = 0; i < seconds * 2; i++)); do
        if eval "$what" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

# --- ClickHouse -----------------------------------------------------------------------------
CLICKHOUSE_URL=${CLICKHOUSE_URL:-http://127.0.0.1:8123}
clickhouse_up() { curl -fsS --max-time 2 "$CLICKHOUSE_URL/ping" >/dev/null 2>&1; }

if clickhouse_up; then
    log "ClickHouse answers at $CLICKHOUSE_URL"
else
    if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
        apt_install clickhouse-server clickhouse-client
    fi
    log "starting ClickHouse"
    if systemd_running; then
        systemctl enable --now clickhouse-server
    else
        # No running systemd (containers, CI): start it the way its unit would.
        install -d -o clickhouse -g clickhouse /var/lib/clickhouse /var/log/clickhouse-server
        start-stop-daemon --start --oknodo --background --chuid clickhouse \
            --exec /usr/sbin/clickhouse-server -- --config=/etc/clickhouse-server/config.xml
    fi
    wait_for clickhouse_up 60 || die "ClickHouse did not answer at $CLICKHOUSE_URL within 60 s (see /var/log/clickhouse-server/)"
    log "ClickHouse answers at $CLICKHOUSE_URL"
fi

# --- MariaDB (the campaign queue's shards) ----------------------------------------------------
mariadb_up() { mariadb-admin --host=127.0.0.1 --user=root ping >/dev/null 2>&1; }

if mariadb_up; then
    log "MariaDB answers at 127.0.0.1:3306"
else
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
        apt_install mariadb-server mariadb-client
    fi
    log "starting MariaDB"
    if systemd_running; then
        systemctl enable --now mariadb
    else
        install -d -o mysql -g mysql /run/mysqld
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    fi
    wait_for mariadb_up 60 || die "MariaDB did not answer at 127.0.0.1:3306 within 60 s"
    log "MariaDB answers at 127.0.0.1:3306"
fi

# --- A replicated ClickHouse cluster (scripts/clickhouse-cluster.sh) ---------------------------
# ZooKeeper from Debian (3.8; it brings Java). The cluster's servers are started by
# scripts/test.sh and `scripts/quickstart.sh --cluster`, not here.
if [ ! -f /usr/share/java/zookeeper.jar ]; then
    apt_install zookeeper
fi

# --- Test tools -------------------------------------------------------------------------------
# ClickHouse 26.x in process (PyPI's chdb-core): scripts/check-clickhouse-new.sh checks the
# schema and the jobs' statements on it against 18.16.
if ! python3 -c "import chdb" >/dev/null 2>&1; then
    log "installing chdb-core (ClickHouse 26.x in process, for the CI's version check)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore chdb-core
fi
# A real SMTP server for the alerts tests (Python's aiosmtpd, from PyPI).
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    log "installing aiosmtpd (SMTP server for tests)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore aiosmtpd
fi

# Debian's tools the tests and benchmarks use: promtool (in the prometheus package) checks
# the /metrics format, headless Chromium renders the status page, wrk loads it.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# libfaketime: scripts/test.sh runs the tests a second time with the clock moved ahead.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
    had_prometheus=$(command -v prometheus || true)
    apt_install "${missing[@]}"
    # Only promtool is wanted: a Prometheus server the package started on its own goes off.
    if [ -z "$had_prometheus" ] && systemd_running; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# --- Build and schema -----------------------------------------------------------------------
log "building the workspace"
cargo build --workspace --quiet
log "applying the ClickHouse schema"
target/debug/manage-timers migrate
