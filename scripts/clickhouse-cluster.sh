#!/usr/bin/env bash
# A replicated ClickHouse cluster on this machine, as users who outgrow one server run it:
# ZooKeeper (Debian's `zookeeper` package) and two ClickHouse servers that are two replicas of
# one shard of the cluster `zakaz`. Each has its own ports, data directory, `remote_servers`
# and macros, on loopback only; the system ClickHouse (/etc/clickhouse-server, 8123/9000) is
# never touched. Started and stopped like scripts/mariadb-shards.sh.
#
#   scripts/clickhouse-cluster.sh start            # idempotent: starts what is not answering
#   scripts/clickhouse-cluster.sh start --fresh    # when no part answers: drops what an earlier
#                                                  # run left (data, ZooKeeper's state, stale
#                                                  # processes) and starts from empty (tests)
#   scripts/clickhouse-cluster.sh stop [PART...]   # stops what this script started (PART:
#                                                  # zookeeper, replica1, replica2; default all)
#   scripts/clickhouse-cluster.sh start PART...    # starts only those (tests restart a replica)
#   scripts/clickhouse-cluster.sh down             # prints the parts not answering now
#   scripts/clickhouse-cluster.sh parts            # prints every part (as `down` would)
#   scripts/clickhouse-cluster.sh urls             # CLICKHOUSE_URL for the cluster (replicas,
#                                                  # comma-separated, in order)
#   scripts/clickhouse-cluster.sh env              # the settings a binary needs for it
#
# Ports: ZooKeeper ZAKAZ_ZK_PORT (2191); replica N: HTTP 8123+N, native TCP 9010+N,
# interserver 9020+N. Data under ZAKAZ_CH_CLUSTER_DIR (/var/tmp/zakaz-clickhouse-cluster).
set -euo pipefail

DIR=${ZAKAZ_CH_CLUSTER_DIR:-/var/tmp/zakaz-clickhouse-cluster}
ZK_PORT=${ZAKAZ_ZK_PORT:-2191}
CLUSTER=zakaz
REPLICAS=(1 2)
SERVER=${CLICKHOUSE_SERVER_BIN:-/usr/bin/clickhouse-server}
[ -x "$SERVER" ] || SERVER=/usr/sbin/clickhouse-server

http_port() { echo $((8123 + $1)); }
tcp_port() { echo $((9010 + $1)); }
interserver_port() { echo $((9020 + $1)); }

zk_up() {
    # ZooKeeper's four-letter `ruok` (allowed in its config) answers `imok`.
    local answer
    answer=$({ exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3; } 2>/dev/null) || return 1
    [ "$answer" = imok ]
}
replica_up() { curl -fsS --max-time 2 "http://127.0.0.1:$(http_port "$1")/ping" >/dev/null 2>&1; }

wait_up() { # what check seconds log
    local i
    for ((i = 0; i < $3 * 2; i++)); do
        if $2; then return 0; fi
        sleep 0.5
    done
    echo "clickhouse-cluster: $1 did not answer within $3 s (see $4; its last lines follow)" >&2
    tail -n 20 "$4" >&2 2>/dev/null || true
    exit 1
}

start_zookeeper() {
    local d="$DIR/zookeeper"
    if zk_up; then
        echo "==> ZooKeeper answers at 127.0.0.1:$ZK_PORT"
        return
    fi
    [ -f /usr/share/java/zookeeper.jar ] ||
        { echo "clickhouse-cluster: ZooKeeper is not installed (scripts/setup.sh installs Debian's \`zookeeper\`)" >&2; exit 1; }
    mkdir -p "$d/data" "$d/conf"
    cat >"$d/conf/zoo.cfg" <<EOF
# Written by scripts/clickhouse-cluster.sh: a standalone ZooKeeper for the local cluster.
tickTime=1000
# Sessions of 2 to 20 s: a dead client's ephemeral nodes (the jobs' leases) go within seconds.
minSessionTimeout=2000
maxSessionTimeout=20000
initLimit=10
syncLimit=5
dataDir=$d/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,mntr,stat
autopurge.purgeInterval=1
EOF
    cat >"$d/conf/log4j.properties" <<EOF
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$d/server.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p %c{1}: %m%n
EOF
    # The server class directly (not zkServer.sh): its own config, log and pid, no /etc.
    local cp="$d/conf:/usr/share/java/zookeeper.jar" jar
    for jar in slf4j-log4j12 log4j-1.2; do
        [ ! -f "/usr/share/java/$jar.jar" ] || cp="$cp:/usr/share/java/$jar.jar"
    done
    setsid java -Xmx256m -Dzookeeper.log.dir="$d" -Dlog4j.configuration="file:$d/conf/log4j.properties" \
        -cp "$cp" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$d/conf/zoo.cfg" \
        >"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
    wait_up "ZooKeeper on port $ZK_PORT" zk_up 60 "$d/server.log"
    echo "==> ZooKeeper started at 127.0.0.1:$ZK_PORT ($d)"
}

replica_config() {
    local n=$1 d="$DIR/replica$1" r
    mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas"
    {
        cat <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse-cluster.sh: replica $n of shard 01 of the cluster $CLUSTER. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$d/server.log</log>
        <errorlog>$d/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$(http_port "$n")</http_port>
    <tcp_port>$(tcp_port "$n")</tcp_port>
    <interserver_http_port>$(interserver_port "$n")</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
    <remote_servers>
        <$CLUSTER>
            <shard>
                <internal_replication>true</internal_replication>
EOF
        for r in "${REPLICAS[@]}"; do
            printf '                <replica><host>127.0.0.1</host><port>%s</port></replica>\n' "$(tcp_port "$r")"
        done
        cat <<EOF
            </shard>
        </$CLUSTER>
    </remote_servers>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$ZK_PORT</port></node>
        <session_timeout_ms>6000</session_timeout_ms>
    </zookeeper>
    <macros>
        <cluster>$CLUSTER</cluster>
        <shard>01</shard>
        <replica>replica$n</replica>
    </macros>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
    <merge_tree>
        <!-- Inserts retried after a lost answer are recognised by their blocks' hashes. -->
        <replicated_deduplication_window>100</replicated_deduplication_window>
        <!-- A replica that lost ZooKeeper says so (read-only) within seconds, not a minute. -->
        <zookeeper_session_expiration_check_period>2</zookeeper_session_expiration_check_period>
    </merge_tree>
</yandex>
EOF
    } >"$d/config.xml"
    cat >"$d/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>in_order</load_balancing>
            <!-- Statements are kept in system.query_log (the CI check replays them). -->
            <log_queries>1</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
}

start_replica() {
    local n=$1 d="$DIR/replica$1"
    if replica_up "$n"; then
        echo "==> ClickHouse replica $n answers at http://127.0.0.1:$(http_port "$n")"
        return
    fi
    [ -x "$SERVER" ] || { echo "clickhouse-cluster: no clickhouse-server (scripts/setup.sh installs it)" >&2; exit 1; }
    replica_config "$n"
    setsid "$SERVER" --config-file="$d/config.xml" >"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
    wait_up "ClickHouse replica $n on port $(http_port "$n")" "replica_up $n" 60 "$d/server.err.log"
    echo "==> ClickHouse replica $n started at http://127.0.0.1:$(http_port "$n") ($d)"
}

stop_pidfile() { # name pidfile
    local pid i
    [ -f "$2" ] || return 0
    pid=$(cat "$2")
    # Only a process of ours: after a reboot the number may belong to another program.
    if grep -qF "$DIR" "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then
        for ((i = 0; i < 120; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        echo "==> $1 stopped"
    fi
    rm -f "$2"
}

start_part() {
    case "$1" in
    zookeeper) start_zookeeper ;;
    replica[0-9]) start_replica "${1#replica}" ;;
    *) echo "clickhouse-cluster: unknown part \`$1\` (zookeeper, replica1, replica2)" >&2; exit 64 ;;
    esac
}

stop_part() {
    case "$1" in
    zookeeper) stop_pidfile ZooKeeper "$DIR/zookeeper/pid" ;;
    replica[0-9]) stop_pidfile "ClickHouse replica ${1#replica}" "$DIR/$1/pid" ;;
    *) echo "clickhouse-cluster: unknown part \`$1\` (zookeeper, replica1, replica2)" >&2; exit 64 ;;
    esac
}

parts() { echo zookeeper; for r in "${REPLICAS[@]}"; do echo "replica$r"; done; }

# Everything an earlier run left: a killed server's data (ClickHouse 18.16 may refuse to start
# on it) or ZooKeeper's state for tables the data no longer holds. Only when nothing answers.
fresh() {
    local p
    if [ "$(bash "$0" down)" != "$(parts | xargs)" ]; then
        echo "clickhouse-cluster: --fresh refused: a part of the cluster answers (stop it first)" >&2
        exit 1
    fi
    for p in $(parts | tac); do stop_part "$p" >/dev/null; done
    rm -rf "${DIR:?}/zookeeper" "${DIR:?}"/replica[0-9]
}

case "${1:-}" in
start)
    shift
    if [ "${1:-}" = --fresh ]; then
        shift
        fresh
    fi
    [ $# -gt 0 ] || set -- $(parts)
    for p in "$@"; do start_part "$p"; done
    ;;
stop)
    shift
    # Replicas before ZooKeeper: they leave their sessions cleanly.
    [ $# -gt 0 ] || set -- $(parts | tac)
    for p in "$@"; do stop_part "$p"; done
    ;;
down)
    down=()
    zk_up || down+=(zookeeper)
    for r in "${REPLICAS[@]}"; do replica_up "$r" || down+=("replica$r"); done
    echo "${down[*]}"
    ;;
parts) parts | xargs ;;
urls)
    urls=()
    for r in "${REPLICAS[@]}"; do urls+=("http://127.0.0.1:$(http_port "$r")"); done
    (IFS=,; echo "${urls[*]}")
    ;;
env)
    echo "CLICKHOUSE_URL=$(bash "$0" urls)"
    echo "CLICKHOUSE_CLUSTER=$CLUSTER"
    echo "ZOOKEEPER_HOSTS=127.0.0.1:$ZK_PORT"
    ;;
*) echo "usage: $0 start [--fresh] [PART...]|stop [PART...]|down|parts|urls|env" >&2; exit 64 ;;
esac
