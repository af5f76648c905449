"""Lineage through a real `mlflow server` process on 127.0.0.1 (its own sqlite backend and artifact root)."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{d / 'backend.db'}", "--artifacts-destination", str(d / "artifacts")],
                            stdout=open(d / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not become healthy: " + (d / "server.log").read_text()[-2000:])
        yield dict(url=url, dir=d)
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_two_successive_withdrawals_recorded_on_a_real_server(server, tmp_path):
    p = subprocess.run(CLI + ["simulate", "--quiet", "--clients", "3", "--rounds", "2", "--withdraw", "0@1", "--withdraw", "2",
                              "--no-reference", "--tracking-uri", server["url"], "--out", str(tmp_path / "out"),
                              "--model-name", "served"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    c = MlflowClient(server["url"])
    vs = {str(v.version): v for v in c.search_model_versions("name='served'")}
    assert sorted(vs) == ["1", "2", "3", "4"]
    assert [vs[k].tags["unlearn_fl.parent_version"] for k in ("1", "2", "3", "4")] == ["", "1", "2", "3"]
    assert vs["4"].tags["unlearn_fl.withdrawn_clients"] == "0,2" and vs["4"].tags["unlearn_fl.clients"] == "1"
    # The artifacts went through the server to its artifact root.
    arts = [a.path for a in c.list_artifacts(vs["4"].run_id, "report")]
    assert "report/forgetting_report.json" in arts
    assert list((server["dir"] / "artifacts").rglob("forgetting_report.json"))
    # The federation run records where it ran.
    parent = c.get_run(vs["1"].tags["unlearn_fl.federation_run_id"])
    assert parent.data.tags["unlearn_fl.system.flwr"].startswith("1.42")
    # The lineage command reads the same tree.
    out = subprocess.run(CLI + ["lineage", "--tracking-uri", server["url"], "--model-name", "served", "--json"],
                         capture_output=True, text=True, timeout=300)
    rows = json.loads(out.stdout)
    assert [r["version"] for r in rows] == ["1", "2", "3", "4"] and rows[3]["kind"] == "unlearned"
