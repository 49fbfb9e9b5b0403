#!/usr/bin/env bash
# Starts, stops or shows a local Quill cluster: NODES brokers on 127.0.0.1, each its own process
# with its own data dir, client port and replication (QUIC) port, talking over mutual TLS with
# certificates made by `quill cluster init-certs`.
#
#   scripts/local-cluster.sh start      # 3 nodes: clients on 127.0.0.1:9092-9094
#   scripts/local-cluster.sh status     # `quill cluster status` against node 1
#   scripts/local-cluster.sh stop       # SIGTERM to every node, waits for them
#   scripts/local-cluster.sh kill N     # SIGKILL node N (to watch a failover)
#   scripts/local-cluster.sh restart N  # start node N again
#
# Settings (environment): NODES (3), DIR (./quill-cluster), CLIENT_PORT (9092: node N listens on
# CLIENT_PORT+N-1), REPL_PORT (9192), SHARDS (1 per node), QUILL (the binary; default: build
# target/release/quill with cargo). Logs: $DIR/node-N.log.
set -euo pipefail

NODES=${NODES:-3}
DIR=${DIR:-./quill-cluster}
CLIENT_PORT=${CLIENT_PORT:-9092}
REPL_PORT=${REPL_PORT:-9192}
SHARDS=${SHARDS:-1}
cd "$(dirname "$0")/.."
if [[ -z "${QUILL:-}" ]]; then
    cargo build --release --quiet --bin quill
    QUILL=target/release/quill
fi
CPUS=$(nproc)

peers() {
    local out="" n
    for n in $(seq 1 "$NODES"); do
        out+="${out:+,}$n@127.0.0.1:$((REPL_PORT + n - 1))"
    done
    echo "$out"
}

start_node() {
    local n=$1 pidfile="$DIR/node-$1.pid" log="$DIR/node-$1.log"
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "node $n is already running (pid $(cat "$pidfile"))"
        return
    fi
    mkdir -p "$DIR/node-$n"
    # Spread the shards over the CPUs: node N starts at CPU (N-1)*SHARDS.
    local cpus="" s
    for s in $(seq 0 $((SHARDS - 1))); do
        cpus+="${cpus:+,}$(( ((n - 1) * SHARDS + s) % CPUS ))"
    done
    "$QUILL" serve --node-id "$n" --peers "$(peers)" --tls-dir "$DIR/certs" \
        --listen "127.0.0.1:$((CLIENT_PORT + n - 1))" --data-dir "$DIR/node-$n" \
        --shards "$SHARDS" --cpus "$cpus" --replication-cpu $(( (n - 1) % CPUS )) \
        >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        local line
        line=$(grep -m1 "quill listening" "$log" || true)
        if [[ $line == *"shard ports"* ]]; then
            echo "node $n: $line (pid $(cat "$pidfile"), log $log)"
            return
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "node $n exited; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "node $n did not start within 10 s; see $log" >&2
    exit 1
}

stop_node() {
    local n=$1 signal=$2 pidfile="$DIR/node-$1.pid"
    [[ -f $pidfile ]] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$signal" "$pid"
        for _ in $(seq 1 600); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    echo "node $n stopped ($signal)"
}

case "${1:-}" in
start)
    mkdir -p "$DIR"
    if [[ ! -f $DIR/certs/ca.pem ]]; then
        "$QUILL" cluster init-certs "$DIR/certs" --nodes "$NODES"
    fi
    for n in $(seq 1 "$NODES"); do start_node "$n"; done
    echo "bootstrap: 127.0.0.1:$CLIENT_PORT  (try: $QUILL topic create demo --partitions 3 --replication-factor 3)"
    ;;
stop)
    for n in $(seq 1 "$NODES"); do stop_node "$n" TERM; done
    ;;
kill)
    stop_node "${2:?which node}" KILL
    ;;
restart)
    start_node "${2:?which node}"
    ;;
status)
    "$QUILL" cluster status -b "127.0.0.1:$CLIENT_PORT"
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
