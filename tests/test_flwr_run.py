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


def test_the_staged_app_builds_the_fab_of_the_app_folder(tmp_path):
    """`flwr_run` hands Flower a copy of the app's files (`stage_app`): the FAB built from it is byte for byte the
    one the folder gives, and folders .gitignore ignores are neither walked nor copied."""
    from flwr.cli.build import build_fab_from_disk

    from unlearn_fl.engine.launch import stage_app

    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "quickstart-unlearning", app)
    (app / ".gitignore").write_text("venv/\nlocal-data/\n*.log\n")
    (app / "venv" / "lib").mkdir(parents=True)
    (app / "venv" / "lib" / "site.py").write_text("x = 1\n")  # would be bundled were it not ignored
    (app / "local-data").mkdir()
    (app / "local-data" / "rows.md").write_text("secret\n")
    (app / "notes.log").write_text("log\n")
    (app / "extra").mkdir()
    (app / "extra" / "helper.py").write_text("y = 2\n")
    for folder in (app, ROOT):
        staged = stage_app(folder, tmp_path / f"staged-{folder.name}")
        assert build_fab_from_disk(staged) == build_fab_from_disk(folder)
    copied = {p.relative_to(tmp_path / "staged-app").as_posix() for p in (tmp_path / "staged-app").rglob("*") if p.is_file()}
    assert "extra/helper.py" in copied and "pyproject.toml" in copied
    assert not any(c.startswith(("venv/", "local-data/")) or c.endswith(".log") for c in copied)
