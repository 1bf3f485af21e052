#!/usr/bin/env bash
# Extra MariaDB servers for the campaign queue's shards: a real deployment keeps each shard on
# its own server, so tests and the quickstart spread shards over these plus the system MariaDB
# (127.0.0.1:3306). Each instance has its own data directory and listens on loopback only.
#
#   scripts/mariadb-shards.sh start   # idempotent: starts what is not answering
#   scripts/mariadb-shards.sh stop [PORT...]  # stops the instances this script started
#                                             # (only those on PORTs, when given)
#   scripts/mariadb-shards.sh ports   # prints the ports, space separated
#   scripts/mariadb-shards.sh down    # prints the ports where no server answers now
#
# Settings: ZAKAZ_SHARD_PORTS (default "3316 3317"), ZAKAZ_SHARD_DIR (default
# /var/tmp/zakaz-mariadb-shards).
set -euo pipefail

PORTS=${ZAKAZ_SHARD_PORTS:-3316 3317}
DIR=${ZAKAZ_SHARD_DIR:-/var/tmp/zakaz-mariadb-shards}

up() { mariadb-admin --no-defaults --host=127.0.0.1 --port="$1" --user=root ping >/dev/null 2>&1; }

start_one() {
    local port=$1 data="$DIR/$1" i
    if up "$port"; then
        echo "==> MariaDB shard server answers at 127.0.0.1:$port"
        return
    fi
    mkdir -p "$data"
    if [ ! -d "$data/db/mysql" ]; then
        mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data/db" \
            --auth-root-authentication-method=normal --skip-test-db >"$data/install.log" 2>&1 ||
            { echo "mariadb-shards: mariadb-install-db failed for port $port (see $data/install.log)" >&2; exit 1; }
    fi
    # --no-defaults: the host's /etc/mysql must not change (or break) these servers.
    mariadbd --no-defaults --user="$(id -un)" --datadir="$data/db" --port="$port" \
        --bind-address=127.0.0.1 --socket="$data/sock" --pid-file="$data/pid" \
        --skip-log-bin --innodb-buffer-pool-size=128M --max-connections=500 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        >"$data/server.log" 2>&1 &
    for ((i = 0; i < 120; i++)); do
        if up "$port"; then
            echo "==> MariaDB shard server started at 127.0.0.1:$port ($data)"
            return
        fi
        sleep 0.5
    done
    echo "mariadb-shards: the server on port $port did not answer within 60 s (see $data/server.log)" >&2
    exit 1
}

stop_one() {
    local port=$1 data="$DIR/$1" pid i
    [ -f "$data/pid" ] || return 0
    pid=$(cat "$data/pid")
    if kill "$pid" 2>/dev/null; then
        for ((i = 0; i < 120; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        echo "==> MariaDB shard server on port $port stopped"
    fi
}

case "${1:-}" in
start) for p in $PORTS; do start_one "$p"; done ;;
stop)
    shift
    [ $# -gt 0 ] || set -- $PORTS
    for p in "$@"; do stop_one "$p"; done
    ;;
ports) echo "$PORTS" ;;
down)
    down=()
    for p in $PORTS; do up "$p" || down+=("$p"); done
    echo "${down[*]}"
    ;;
*) echo "usage: $0 start|stop [PORT...]|ports|down" >&2; exit 64 ;;
esac
