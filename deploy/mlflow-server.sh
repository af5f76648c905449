#!/usr/bin/env bash
# MLflow tracking server + Model Registry on 127.0.0.1 (sqlite store, local artifact folder).
#
#   deploy/mlflow-server.sh [start|stop|status]      (default: start)
#
# start: launches `mlflow server` in its own process group, writes $DEPLOY_STATE_DIR/pids/mlflow.pid,
#        and returns once GET http://127.0.0.1:$MLFLOW_PORT/health answers (timeout MLFLOW_START_TIMEOUT, 180 s).
# stop:  SIGTERM to the whole process group, SIGKILL after 10 s (mlflow's uvicorn ignores SIGTERM for a while).
# Settings: MLFLOW_PORT (5000), MLFLOW_DIR ($DEPLOY_STATE_DIR/mlflow), MLFLOW_WORKERS (1); see deploy/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MLFLOW_START_TIMEOUT="${MLFLOW_START_TIMEOUT:-180}"
URL="http://$HOST:$MLFLOW_PORT"
LOG="$LOG_DIR/mlflow.log"

health() { http_ok "$URL/health"; }

case "${1:-start}" in
start)
    need mlflow
    if is_running mlflow; then
        echo "mlflow already running (pid $(cat "$PID_DIR/mlflow.pid")) at $URL"
        exit 0
    fi
    if health 2>/dev/null; then
        die "something already answers on $URL (not started by these scripts); choose another MLFLOW_PORT"
    fi
    mkdir -p "$MLFLOW_DIR/artifacts"
    MLFLOW_DIR="$(cd "$MLFLOW_DIR" && pwd)"
    # The job runner (huey consumers) is not needed for tracking + registry and costs ~1 min of
    # start-up on 2 cores; set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
    start_bg mlflow "$LOG" mlflow server \
        --host "$HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
        --backend-store-uri "sqlite:///$MLFLOW_DIR/mlflow.db" \
        --artifacts-destination "$MLFLOW_DIR/artifacts"
    wait_for mlflow "$MLFLOW_START_TIMEOUT" "$LOG" health
    echo "mlflow server ready at $URL (pid $(cat "$PID_DIR/mlflow.pid"), store $MLFLOW_DIR, log $LOG)"
    ;;
stop)
    stop_group mlflow 10
    ;;
status)
    if is_running mlflow && health; then
        echo "mlflow: running (pid $(cat "$PID_DIR/mlflow.pid")) at $URL"
    elif is_running mlflow; then
        echo "mlflow: process alive (pid $(cat "$PID_DIR/mlflow.pid")) but $URL/health does not answer"
        exit 1
    else
        echo "mlflow: not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
