# Shared settings of the deploy/ scripts (sourced, not run).
#
# Every address is 127.0.0.1: these scripts run a whole federation on one machine.
# See deploy/README.md for running the same pieces across several hosts.
#
# Environment (all optional):
#   DEPLOY_STATE_DIR      logs, pid files, Flower home, staged app   (/tmp/unlearn-fl-deploy)
#   VENV                  virtualenv whose bin/ holds flwr, flower-*, mlflow   (<repo>/.venv)
#   MLFLOW_PORT           MLflow tracking server port                 (5000)
#   MLFLOW_DIR            MLflow sqlite store + artifacts             ($DEPLOY_STATE_DIR/mlflow)
#   MLFLOW_WORKERS        uvicorn workers of the MLflow server        (1)
#   SUPERLINK_PORT        the SuperLink's single HTTP port: Fleet, Control and Runtime APIs (9093)
#   NUM_SUPERNODES        SuperNodes to start, partition-id 0..N-1    (3)
#   SUPERNODE_BASE_PORT   SuperNode k serves its Runtime API on BASE+k (9100)
#   SUPERNODE_PORTS       explicit space-separated ports, overrides SUPERNODE_BASE_PORT
#   TLS_DIR               if set: ca.crt, server.crt, server.key there switch TLS on
#                         (make them with deploy/make-certs.sh); unset = --insecure
#   FLWR_CONNECTION       name of the SuperLink connection in the Flower config (local-deployment)

set -euo pipefail
CALLER_PWD="$PWD"

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"

HOST=127.0.0.1
DEPLOY_STATE_DIR="${DEPLOY_STATE_DIR:-/tmp/unlearn-fl-deploy}"
VENV="${VENV:-$REPO_ROOT/.venv}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_DIR="${MLFLOW_DIR:-$DEPLOY_STATE_DIR/mlflow}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-1}"
SUPERLINK_PORT="${SUPERLINK_PORT:-9093}"
NUM_SUPERNODES="${NUM_SUPERNODES:-3}"
SUPERNODE_BASE_PORT="${SUPERNODE_BASE_PORT:-9100}"
SUPERNODE_PORTS="${SUPERNODE_PORTS:-}"
TLS_DIR="${TLS_DIR:-}"
FLWR_CONNECTION="${FLWR_CONNECTION:-local-deployment}"

PID_DIR="$DEPLOY_STATE_DIR/pids"
LOG_DIR="$DEPLOY_STATE_DIR/logs"
# The Flower CLI keeps its SuperLink connections in $FLWR_HOME/config.toml (Flower >= 1.26);
# a private FLWR_HOME leaves ~/.flwr alone. SuperLink and SuperNodes install FABs there too.
export FLWR_HOME="$DEPLOY_STATE_DIR/flwr-home"

if [[ -d "$VENV/bin" ]]; then
    export PATH="$VENV/bin:$PATH"   # flower-superlink spawns `flower-superexec` by name
fi
# Quieter, single-threaded torch in every ClientApp/ServerApp process (2-core friendly).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export GIT_PYTHON_REFRESH="${GIT_PYTHON_REFRESH:-quiet}"
export PYTHONUNBUFFERED=1

mkdir -p "$PID_DIR" "$LOG_DIR" "$FLWR_HOME"
DEPLOY_STATE_DIR="$(cd "$DEPLOY_STATE_DIR" && pwd)"
if [[ -n "$TLS_DIR" && "$TLS_DIR" != /* ]]; then TLS_DIR="$CALLER_PWD/$TLS_DIR"; fi
# Work from the state dir: `flwr` commands started next to a pyproject.toml that still has
# [tool.flwr.federations] migrate that section into $FLWR_HOME and rewrite the pyproject.
cd "$DEPLOY_STATE_DIR"

die() { echo "error: $*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH (looked in $VENV/bin first); install the project: make install"
}

supernode_port() {  # supernode_port K
    local k="$1"
    if [[ -n "$SUPERNODE_PORTS" ]]; then
        local -a ports=($SUPERNODE_PORTS)
        [[ $k -lt ${#ports[@]} ]] || die "SUPERNODE_PORTS has ${#ports[@]} ports, need one for SuperNode $k"
        echo "${ports[$k]}"
    else
        echo $((SUPERNODE_BASE_PORT + k))
    fi
}

# http_ok URL [CAFILE]: true when URL answers 2xx (any HTTP status with ANY_STATUS=1).
http_ok() {
    python3 - "$@" <<'PYEOF'
import os, ssl, sys, urllib.error, urllib.request
url = sys.argv[1]
ctx = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
try:
    urllib.request.urlopen(url, timeout=3, context=ctx)
except urllib.error.HTTPError:
    sys.exit(0 if os.environ.get("ANY_STATUS") == "1" else 1)
except Exception:
    sys.exit(1)
PYEOF
}

tls_on() { [[ -n "$TLS_DIR" ]]; }

check_tls_files() {
    local f
    for f in ca.crt server.crt server.key; do
        [[ -f "$TLS_DIR/$f" ]] || die "TLS_DIR=$TLS_DIR has no $f (create it with deploy/make-certs.sh)"
    done
}

# Start "$@" in its own session (process group = its pid) with output to LOGFILE; record the pid.
start_bg() {  # start_bg NAME LOGFILE cmd...
    local name="$1" logfile="$2"; shift 2
    setsid "$@" >"$logfile" 2>&1 < /dev/null &
    echo $! >"$PID_DIR/$name.pid"
}

is_running() {  # is_running NAME
    local f="$PID_DIR/$1.pid"
    [[ -f "$f" ]] || return 1
    local stat
    stat="$(ps -o stat= -p "$(cat "$f")" 2>/dev/null || true)"
    [[ -n "$stat" && "$stat" != Z* ]]   # a dead child nobody reaped shows as Z
}

# True while the process group PGID has a member that is not a zombie.
group_alive() {  # group_alive PGID
    [[ -n "$(ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/')" ]]
}

# Stop the process group recorded for NAME: SIGTERM, then SIGKILL after GRACE seconds.
stop_group() {  # stop_group NAME [GRACE]
    local name="$1" grace="${2:-10}" f="$PID_DIR/$1.pid" pid i
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if group_alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 5; i++)); do
            group_alive "$pid" || break
            sleep 0.2
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "stopped $name (process group $pid)"
    fi
    rm -f "$f"
}

# Wait until `cmd...` succeeds, at most TIMEOUT seconds; fail if process NAME died meanwhile.
wait_for() {  # wait_for NAME TIMEOUT LOGFILE cmd...
    local name="$1" timeout="$2" logfile="$3"; shift 3
    local start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if ! is_running "$name"; then
            echo "---- last lines of $logfile ----" >&2; tail -n 30 "$logfile" >&2 || true
            die "$name exited during start-up"
        fi
        if (( SECONDS - start > timeout )); then
            echo "---- last lines of $logfile ----" >&2; tail -n 30 "$logfile" >&2 || true
            die "$name not ready after ${timeout}s"
        fi
        sleep 1
    done
}

# Write the Flower config that points the `flwr` CLI at the local SuperLink.
write_flower_config() {
    local cfg="$FLWR_HOME/config.toml"
    {
        echo "[superlink]"
        echo "default = \"$FLWR_CONNECTION\""
        echo
        echo "[superlink.$FLWR_CONNECTION]"
        echo "address = \"$HOST:$SUPERLINK_PORT\""
        if tls_on; then
            echo "root-certificates = \"$(cd "$TLS_DIR" && pwd)/ca.crt\""
        else
            echo "insecure = true"
        fi
    } >"$cfg"
}
