#!/usr/bin/env bash
# Run the unlearn-fl Flower app on the running local federation and wait until it finishes.
#
#   deploy/run.sh ["key=value key2='text' ..."]
#
# The arguments are extra `--run-config` overrides (kebab-case keys of [tool.flwr.app.config] in
# pyproject.toml, TOML values: strings quoted, e.g. "rounds=3 withdraw='1' reference=false").
# Defaults added here: num-clients=$NUM_SUPERNODES, tracking-uri=http://127.0.0.1:$MLFLOW_PORT,
# out=$DEPLOY_STATE_DIR/report (later overrides win).
#
# Flower 1.42 reads SuperLink connections from $FLWR_HOME/config.toml, not from
# [tool.flwr.federations] in pyproject.toml (and rewrites a pyproject that has one). The app is
# staged into $DEPLOY_STATE_DIR/app (sources only, such a table dropped if present, no .venv in
# the FAB) and run from there; the repository is never modified.
#
# Exit code 0 when the run ends "finished:completed", 1 otherwise (failed, stopped, timed out).
# RUN_TIMEOUT (1800 s) bounds the wait; on timeout the run is stopped with `flwr stop`.
# The run's log is saved to $DEPLOY_STATE_DIR/logs/run-<id>.log.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_TIMEOUT="${RUN_TIMEOUT:-1800}"
POLL_SECONDS="${POLL_SECONDS:-5}"
APP_DIR="$DEPLOY_STATE_DIR/app"
OUT_DIR="$DEPLOY_STATE_DIR/report"

need flwr
[[ -f "$FLWR_HOME/config.toml" ]] || die "no Flower config in $FLWR_HOME: start the federation first (deploy/local-federation.sh start)"

# ---- stage the app: pyproject.toml without [tool.flwr.federations*], plus the packages
rm -rf "$APP_DIR"
mkdir -p "$APP_DIR"
for item in server client unlearn_fl README.md .gitignore; do
    [[ -e "$REPO_ROOT/$item" ]] && cp -R "$REPO_ROOT/$item" "$APP_DIR/"
done
find "$APP_DIR" -name __pycache__ -type d -prune -exec rm -rf {} +
python3 - "$REPO_ROOT/pyproject.toml" "$APP_DIR/pyproject.toml" <<'EOF'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
out, skip = [], False
for line in open(src, encoding="utf-8").read().splitlines(keepends=True):
    m = re.match(r"\s*\[(.*)\]\s*$", line)
    if m:
        skip = m.group(1).strip().startswith("tool.flwr.federations")
    if not skip:
        out.append(line)
open(dst, "w", encoding="utf-8").write("".join(out))
EOF

# Defaults and user overrides go in separate --run-config options: Flower applies them in order
# (a key repeated inside ONE option is a TOML error).
DEFAULT_CONFIG="num-clients=$NUM_SUPERNODES tracking-uri='http://$HOST:$MLFLOW_PORT' out='$OUT_DIR'"
config_args=(--run-config "$DEFAULT_CONFIG")
[[ $# -gt 0 && -n "$*" ]] && config_args+=(--run-config "$*")
echo "flwr run $APP_DIR $FLWR_CONNECTION --run-config \"$DEFAULT_CONFIG\"${*:+ --run-config \"$*\"}"

# ---- submit
submit_json="$(flwr run "$APP_DIR" "$FLWR_CONNECTION" "${config_args[@]}" --format json)" || {
    echo "$submit_json" >&2
    die "flwr run failed to submit"
}
RUN_ID="$(printf '%s' "$submit_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("run-id") or "")')"
[[ -n "$RUN_ID" ]] || die "flwr run returned no run id: $submit_json"
echo "run $RUN_ID submitted; waiting (timeout ${RUN_TIMEOUT}s)"

# ---- wait
status_of() {
    flwr ls "$FLWR_CONNECTION" --run-id "$RUN_ID" --format json 2>/dev/null | python3 -c '
import json, sys
try:
    runs = json.load(sys.stdin).get("runs", [])
    print(runs[0]["status"] if runs else "unknown")
except Exception:
    print("unknown")'
}

t0=$SECONDS
last=""
status="unknown"
while :; do
    status="$(status_of)"
    [[ "$status" != "$last" ]] && echo "  [$((SECONDS - t0))s] $status" && last="$status"
    [[ "$status" == finished* ]] && break
    if (( SECONDS - t0 > RUN_TIMEOUT )); then
        echo "timeout after ${RUN_TIMEOUT}s: stopping run $RUN_ID" >&2
        flwr stop "$RUN_ID" "$FLWR_CONNECTION" >/dev/null 2>&1 || true
        status="timeout"
        break
    fi
    sleep "$POLL_SECONDS"
done

LOG="$LOG_DIR/run-$RUN_ID.log"
timeout 60 flwr log "$RUN_ID" "$FLWR_CONNECTION" --show >"$LOG" 2>&1 || true
echo "run $RUN_ID: $status after $((SECONDS - t0))s (log: $LOG)"
if [[ "$status" == "finished:completed" ]]; then
    echo "report: $OUT_DIR/forgetting_report.json (unless out= was overridden); MLflow: http://$HOST:$MLFLOW_PORT"
    exit 0
fi
tail -n 40 "$LOG" >&2 || true
exit 1
