#!/usr/bin/env bash
# A Flower federation on this machine: one SuperLink and NUM_SUPERNODES SuperNodes, loopback only.
#
#   deploy/local-federation.sh start|stop|status
#
# Flower 1.42 serves the SuperLink's Fleet, Control and Runtime (ServerAppIo) APIs on ONE HTTP port
# (--host/--port); the old --fleet-api-address / --control-api-address / --serverappio-api-address
# flags are deprecated or rejected. A SuperNode connects with --superlink HOST:PORT and serves its own
# Runtime (ClientAppIo) API on --host/--port (the old --clientappio-api-address is rejected).
#
# SuperNode k gets --node-config "partition-id=k num-partitions=N": the unlearn-fl ClientApp uses
# partition-id as its client id. With SITE_DATA_DIR set, SuperNode k also gets its own data file and
# erasure store: data-path=$SITE_DATA_DIR/site-k.csv (or .npz) erasure-dir=$SITE_DATA_DIR/site-k-erasures
# (run the app with site-data=true: the server then holds no client data).
#
# TLS: with TLS_DIR set (ca.crt, server.crt, server.key; see deploy/make-certs.sh) the SuperLink gets
# --ssl-ca-certfile/--ssl-certfile/--ssl-keyfile and SuperNodes --root-certificates; otherwise --insecure.
#
# Logs: $DEPLOY_STATE_DIR/logs/{superlink,supernode-K}.log; pids: $DEPLOY_STATE_DIR/pids/.
# The `flwr` connection "$FLWR_CONNECTION" is written to $FLWR_HOME/config.toml.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FED_START_TIMEOUT="${FED_START_TIMEOUT:-120}"

superlink_up() {  # any HTTP answer on the SuperLink port (404 on / is fine)
    if tls_on; then
        ANY_STATUS=1 http_ok "https://$HOST:$SUPERLINK_PORT/" "$TLS_DIR/ca.crt"
    else
        ANY_STATUS=1 http_ok "http://$HOST:$SUPERLINK_PORT/"
    fi
}

online_supernodes() {
    flwr supernode ls "$FLWR_CONNECTION" --format json 2>/dev/null | python3 -c '
import json, sys
try:
    nodes = json.load(sys.stdin).get("nodes", [])
except Exception:
    nodes = []
print(sum(1 for n in nodes if n.get("status") == "online"))'
}

all_online() { [[ "$(online_supernodes)" -ge "$NUM_SUPERNODES" ]]; }

start() {
    need flower-superlink
    need flower-supernode
    need flwr
    if tls_on; then check_tls_files; fi
    if is_running superlink; then
        die "a SuperLink started by these scripts is already running (pid $(cat "$PID_DIR/superlink.pid")); run '$0 stop' first"
    fi
    if superlink_up 2>/dev/null; then
        die "something already answers on $HOST:$SUPERLINK_PORT; choose another SUPERLINK_PORT"
    fi
    write_flower_config

    local sec_link=(--insecure) sec_node=(--insecure)
    if tls_on; then
        sec_link=(--ssl-ca-certfile "$TLS_DIR/ca.crt" --ssl-certfile "$TLS_DIR/server.crt" --ssl-keyfile "$TLS_DIR/server.key")
        sec_node=(--root-certificates "$TLS_DIR/ca.crt")
    fi

    # --disable-runtime-dependency-installation: the SuperLink would otherwise `uv sync` the app's
    # dependencies (torch, ...) for every run; everything is installed in the venv already.
    start_bg superlink "$LOG_DIR/superlink.log" flower-superlink "${sec_link[@]}" \
        --host "$HOST" --port "$SUPERLINK_PORT" --disable-runtime-dependency-installation
    wait_for superlink "$FED_START_TIMEOUT" "$LOG_DIR/superlink.log" superlink_up
    echo "SuperLink ready on $HOST:$SUPERLINK_PORT ($(tls_on && echo TLS || echo insecure))"

    local k port
    for ((k = 0; k < NUM_SUPERNODES; k++)); do
        port="$(supernode_port "$k")"
        local node_config="partition-id=$k num-partitions=$NUM_SUPERNODES"
        if [[ -n "${SITE_DATA_DIR:-}" ]]; then
            local f="$SITE_DATA_DIR/site-$k.csv"
            [[ -f "$f" ]] || f="$SITE_DATA_DIR/site-$k.npz"
            [[ -f "$f" ]] || die "SITE_DATA_DIR=$SITE_DATA_DIR has no site-$k.csv or site-$k.npz"
            node_config="$node_config data-path='$f' erasure-dir='$SITE_DATA_DIR/site-$k-erasures'"
        fi
        start_bg "supernode-$k" "$LOG_DIR/supernode-$k.log" flower-supernode "${sec_node[@]}" \
            --superlink "$HOST:$SUPERLINK_PORT" --host "$HOST" --port "$port" \
            --node-config "$node_config"
    done
    local t0=$SECONDS
    until all_online; do
        for ((k = 0; k < NUM_SUPERNODES; k++)); do
            if ! is_running "supernode-$k"; then
                tail -n 30 "$LOG_DIR/supernode-$k.log" >&2 || true
                die "SuperNode $k exited during start-up (log: $LOG_DIR/supernode-$k.log)"
            fi
        done
        (( SECONDS - t0 > FED_START_TIMEOUT )) && die "only $(online_supernodes)/$NUM_SUPERNODES SuperNodes online after ${FED_START_TIMEOUT}s"
        sleep 1
    done
    echo "$NUM_SUPERNODES SuperNodes online (Runtime API ports: $(for ((k = 0; k < NUM_SUPERNODES; k++)); do printf '%s ' "$(supernode_port "$k")"; done))"
    echo "flwr connection '$FLWR_CONNECTION' in $FLWR_HOME/config.toml; logs in $LOG_DIR"
}

stop() {
    local f name
    shopt -s nullglob
    for f in "$PID_DIR"/supernode-*.pid; do
        name="$(basename "$f" .pid)"
        stop_group "$name" 10
    done
    stop_group superlink 10
}

status() {
    local rc=0 f name
    shopt -s nullglob
    if is_running superlink; then
        echo "superlink: running (pid $(cat "$PID_DIR/superlink.pid")) on $HOST:$SUPERLINK_PORT"
    else
        echo "superlink: not running"; rc=1
    fi
    for f in "$PID_DIR"/supernode-*.pid; do
        name="$(basename "$f" .pid)"
        if is_running "$name"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: dead"; rc=1; fi
    done
    if [[ $rc -eq 0 ]]; then
        echo "online SuperNodes seen by the SuperLink: $(online_supernodes)"
    fi
    return $rc
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
