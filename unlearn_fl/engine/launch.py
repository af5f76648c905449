"""Run a Flower app with `flwr run` on Flower's local simulation engine (the supported entry point).

Flower 1.42 deprecates `flwr.simulation.run_simulation`; `flwr run APP_DIR` builds the app,
starts a local SuperLink and simulates the SuperNodes. Each call here gets a Flower home and
SuperLink ports of its own, and stops that SuperLink when the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def stage_app(app_dir: str | Path, dest: str | Path) -> Path:
    """Copy into `dest` the files of the Flower app `app_dir` that `flwr build` bundles; return `dest`.

    `flwr run` walks every file under the app folder (resolving each path) before it applies `.gitignore` and
    its include rules, so a virtualenv inside the folder (the `.venv` that `make` creates) costs seconds per run.
    Here the walk skips the folders `.gitignore` ignores and `.git`, then Flower's own rules (the
    `flwr.cli.build` helpers) pick the files, so the FAB built from `dest` is the one `app_dir` gives.
    Returns `app_dir` itself, with nothing copied, when those helpers are not importable (another Flower).
    """
    root = Path(app_dir).resolve()
    try:
        import tomllib

        from flwr.cli.build import filter_paths_for_publish, get_filtered_fab_paths
        from flwr.cli.utils import build_pathspec, load_gitignore_patterns
    except ImportError:
        return root
    ignore_file = root / ".gitignore"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ignored = build_pathspec(tuple(load_gitignore_patterns(ignore_file.read_bytes() if ignore_file.is_file() else b"")))
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d != ".git" and not ignored.match_file((rel / d).as_posix() + "/")]
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                files[(rel / name).as_posix()] = path
    config = tomllib.loads((root / "pyproject.toml").read_text())
    with warnings.catch_warnings():  # Flower's pathspec patterns are deprecated there, not here
        warnings.simplefilter("ignore", DeprecationWarning)
        keep = get_filtered_fab_paths(filter_paths_for_publish(files), config)
    dest = Path(dest)
    for rel in {"pyproject.toml", *keep, *([".gitignore"] if ignore_file.is_file() else [])}:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest / rel)
    return dest


def flwr_run(app_dir: str | Path, run_config: dict, num_supernodes: int,
             on_line: Callable[[str], bool] | None = None, timeout: float = 3600) -> tuple[int, list[str]]:
    """`flwr run APP_DIR --run-config <overrides> --federation-config num-supernodes=N --stream`.

    run_config: overrides of the app's `[tool.flwr.app.config]` (its keys must exist there).
    on_line: called with each streamed log line; a True return keeps the line out of the tail.
    Returns (exit code, the last 60 log lines). Raises RuntimeError when `flwr` is not installed.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    flwr = shutil.which("flwr", path=path)
    if flwr is None:
        raise RuntimeError("the `flwr` command is not installed: pip install 'flwr[simulation]'")
    with tempfile.TemporaryDirectory(prefix="unlearn-fl-") as tmp:
        overrides = Path(tmp) / "run-config.toml"
        overrides.write_text("".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in run_config.items()))
        env = {**os.environ, "FLWR_HOME": str(Path(tmp) / "flwr-home"), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
               "PATH": path, "RAY_DEDUP_LOGS": "0", "PYTHONWARNINGS": "ignore", "GIT_PYTHON_REFRESH": "quiet",
               # A SuperLink of this run's own: flwr's local one listens on fixed ports otherwise.
               "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()), "FLWR_LOCAL_CONTROL_API_PORT": str(free_port())}
        app = stage_app(app_dir, Path(tmp) / "app")
        cmd = [flwr, "run", str(app), "--run-config", str(overrides),
               "--federation-config", f"num-supernodes={num_supernodes}", "--stream"]
        tail: list[str] = []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp,
                                start_new_session=True)
        try:
            for line in proc.stdout:
                if on_line is not None and on_line(line):
                    continue
                tail = (tail + [line.rstrip()])[-60:]
            proc.wait(timeout=timeout)
        finally:
            # The local SuperLink outlives `flwr run`: stop every process of this run's Flower home.
            found = subprocess.run(["pgrep", "-f", tmp], capture_output=True, text=True).stdout.split()
            for pid in found:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, tail


def run_in_simulation(server_main: Callable, client_app, num_supernodes: int):
    """Run `server_main(grid)` as the ServerApp of an in-process Flower simulation with `num_supernodes` copies of
    `client_app` (one CPU each); return what it returned, or re-raise what it raised (the simulation itself only
    logs a ServerApp's exception). For workflows driven from Python (benchmarks, tests, `unlearn-fl feature
    --clients`); a whole app runs with `flwr_run`."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    result: dict = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            result["out"] = server_main(grid)
        except BaseException as e:
            result["error"] = e
            raise

    run_simulation(server_app=server, client_app=client_app, num_supernodes=num_supernodes,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    if "error" in result:
        raise result["error"]
    return result["out"]
