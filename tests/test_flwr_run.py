"""`flwr run .` on Flower's own local simulation engine runs the same ServerApp/ClientApp."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).parents[1]


def test_flwr_run_local_simulation(tmp_path):
    app = tmp_path / "app"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not files:  # not a git checkout: copy the sources
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if ".venv" not in p.parts] + ["pyproject.toml", "README.md"]
    for f in files:
        if (ROOT / f).is_file():
            (app / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, app / f)
    home = tmp_path / "flwr-home"
    from unlearn_fl.engine.launch import free_port

    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           # a local SuperLink of this test's own, not one another `flwr run` on the machine started
           "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()), "FLWR_LOCAL_CONTROL_API_PORT": str(free_port())}
    db = tmp_path / "m.db"
    cfg = (f"num-clients=3 rounds=2 reference=false model-name='flwr-run' tracking-uri='sqlite:///{db}' "
           f"out='{tmp_path / 'out'}' withdraw='1'")
    try:
        p = subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", ".", "--federation-config", "num-supernodes=3",
                            "--run-config", cfg, "--stream"], cwd=app, env=env, capture_output=True, text=True, timeout=900)
    finally:  # the local SuperLink that flwr started lives on: stop it
        for line in subprocess.run(["pgrep", "-af", str(home)], capture_output=True, text=True).stdout.splitlines():
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert (tmp_path / "out" / "forgetting_report.json").exists(), (p.stdout + p.stderr)[-3000:]
    vs = {str(v.version): v for v in MlflowClient(f"sqlite:///{db}").search_model_versions("name='flwr-run'")}
    assert sorted(vs) == ["1", "2"] and vs["2"].tags["unlearn_fl.withdrawn_clients"] == "1"
