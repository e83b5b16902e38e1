#!/usr/bin/env bash
# The fault suite (docs/RELIABILITY.md): makes sure a second PostgreSQL 15 cluster (port 5433)
# and a second RabbitMQ node (port 5673) exist and run, since the tests restart them and must
# never touch the machine's shared 5432/5672; builds the service binaries; runs every test of
# the `faults` crate, the ignored ones included (the overload scenario with release builds).
#
# Idempotent; runs as root on a fresh machine of this kind. Extra arguments go to the test
# binary as filters; `scripts/faults.sh --instances-only` only makes sure both instances run (the
# broker test starts its stopped node with it). While it runs, the other tests use the second cluster too (FAULTS_PG_URL),
# which keeps them off the busy shared server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
INSTANCES_ONLY=
if [ "${1:-}" = --instances-only ]; then INSTANCES_ONLY=1; shift; fi

PG_VERSION=15
PG_CLUSTER=faults
PG_PORT=${FAULTS_PG_PORT:-5433}
RABBIT_NODE=faults@localhost
RABBIT_PORT=${FAULTS_RABBIT_PORT:-5673}
RABBIT_DIST_PORT=${FAULTS_RABBIT_DIST_PORT:-25673}
RABBIT_BASE=${FAULTS_RABBIT_BASE:-/var/tmp/chronicle-faults-rabbitmq}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local name=$1 port=$2
    for _ in $(seq 1 90); do
        port_open "$port" && return 0
        sleep 1
    done
    echo "$name did not come up on port $port within 90 s" >&2
    return 1
}

# --- PostgreSQL: cluster "faults" on 5433, trust auth on loopback ------------------------------
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    echo "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" -- --auth-local=trust --auth-host=trust >/dev/null
fi
PG_CONF=/etc/postgresql/$PG_VERSION/$PG_CLUSTER
if ! grep -q '^host all all 127.0.0.1/32 trust' "$PG_CONF/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$PG_CONF/pg_hba.conf"
fi
# Enough connections for a few services and the tests, and quick restarts.
if ! grep -q '^# chronicle faults' "$PG_CONF/postgresql.conf"; then
    cat >>"$PG_CONF/postgresql.conf" <<CONF
# chronicle faults
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 64MB
fsync = on
CONF
fi
if ! port_open "$PG_PORT"; then
    echo "starting PostgreSQL cluster $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
    wait_for_port "PostgreSQL ($PG_CLUSTER)" "$PG_PORT"
fi

# --- RabbitMQ: node faults@localhost on 5673 ----------------------------------------------------
rabbit_env() {
    env RABBITMQ_NODENAME="$RABBIT_NODE" RABBITMQ_NODE_PORT="$RABBIT_PORT" \
        RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" RABBITMQ_MNESIA_BASE="$RABBIT_BASE/mnesia" \
        RABBITMQ_LOG_BASE="$RABBIT_BASE/log" RABBITMQ_PID_FILE="$RABBIT_BASE/pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_BASE/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$RABBIT_BASE/rabbitmq.conf" "$@"
}
# A test interrupted while the broker application was stopped leaves the node up without it.
if ! port_open "$RABBIT_PORT" && rabbitmqctl -q -n "$RABBIT_NODE" ping >/dev/null 2>&1; then
    echo "starting the RabbitMQ application on $RABBIT_NODE"
    rabbitmqctl -q -n "$RABBIT_NODE" start_app
    wait_for_port "RabbitMQ ($RABBIT_NODE)" "$RABBIT_PORT"
fi
if ! port_open "$RABBIT_PORT"; then
    echo "starting RabbitMQ node $RABBIT_NODE on port $RABBIT_PORT"
    mkdir -p "$RABBIT_BASE/mnesia" "$RABBIT_BASE/log"
    [ -f "$RABBIT_BASE/enabled_plugins" ] || echo '[].' >"$RABBIT_BASE/enabled_plugins"
    # Its own config: the machine's /etc/rabbitmq/rabbitmq.conf pins the shared node's 5672.
    cat >"$RABBIT_BASE/rabbitmq.conf" <<CONF
listeners.tcp.local = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
CONF
    # rabbitmq-server drops to the rabbitmq user when started as root.
    if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$RABBIT_BASE"; fi
    rabbit_env rabbitmq-server -detached
    wait_for_port "RabbitMQ ($RABBIT_NODE)" "$RABBIT_PORT"
fi

[ -z "$INSTANCES_ONLY" ] || exit 0

# The tests drive the instances with these (see faults/src/lib.rs).
export FAULTS_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT"
export FAULTS_PG_RESTART="pg_ctlcluster --skip-systemctl-redirect $PG_VERSION $PG_CLUSTER restart -m fast"
export FAULTS_PG_STOP="pg_ctlcluster --skip-systemctl-redirect $PG_VERSION $PG_CLUSTER stop -m fast"
export FAULTS_PG_START="pg_ctlcluster --skip-systemctl-redirect $PG_VERSION $PG_CLUSTER start"
export FAULTS_RABBIT_URL="amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f"
export FAULTS_RABBIT_STOP="rabbitmqctl -q -n $RABBIT_NODE stop"
export FAULTS_RABBIT_START="bash $ROOT/scripts/faults.sh --instances-only"

echo "== building the service binaries"
cargo build --bins
# One test at a time: they measure latencies on a 2-core machine. First the tests that run in
# plain `cargo test` too, then the ones that restart this script's PostgreSQL or RabbitMQ.
# FAULTS_BUGS=1 also runs the tests ignored as known bugs of the services (they fail today).
echo "== the fault suite (shared-server tests, on the second cluster)"
cargo test -p faults -- --test-threads=1 --nocapture "$@"
echo "== the fault suite (tests that restart PostgreSQL or RabbitMQ)"
cargo test -p faults -- --ignored --test-threads=1 --nocapture \
    postgres_restart::a_postgres_restart broker_restart:: "$@"
# Release builds of the services and of the test (its load generator): the scenario judges how
# the services shed ten times their knee, which unoptimised code on two cores cannot show (in
# debug builds the test client alone spends ~0.5 ms of CPU a request; docs/RELIABILITY.md 5).
echo "== the overload scenario (release builds)"
cargo build --release -p command-api -p query-api -p projector --bins
cargo test --release -p faults -- --ignored --test-threads=1 --nocapture overload:: "$@"
if [ "${FAULTS_BUGS:-0}" = 1 ]; then
    echo "== known bugs (expected to fail until fixed)"
    cargo test -p faults -- --ignored --test-threads=1 --nocapture \
        --skip postgres_restart::a_postgres_restart --skip broker_restart:: --skip overload:: \
        "$@" || true
fi
