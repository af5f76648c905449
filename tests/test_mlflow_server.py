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
START_TIMEOUT_S = 300  # the bound on `mlflow server` start-up: a hang fails here, a slow machine does not


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
        # A deadline, not a count of polls: on a loaded runner the server takes over a minute to answer (seen with
        # two test suites on 2 cores). A server that exits fails at once; one that never answers, at the deadline.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else f"no answer in {START_TIMEOUT_S} s"
                pytest.fail(f"mlflow server did not become healthy ({state}): " + (d / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield dict(url=url, dir=d)
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: the server's workers are slow to exit; stopping is all we need
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _reader(url: str, stop, seen: list, errors: list, dest: Path) -> None:
    """Read lineage and every listed report, over and over, while the federation writes versions."""
    from unlearn_fl.tracking import TrackingError, fetch_report, lineage

    fetched: set[str] = set()
    while not stop.is_set():
        try:
            rows = lineage(url, "served")
        except TrackingError as e:
            if "no registered model" in str(e):
                stop.wait(0.5)
                continue  # nothing registered yet
            errors.append(f"lineage: {e}")
            continue
        except Exception as e:
            errors.append(f"lineage: {e.__class__.__name__}: {e}")
            continue
        for r in rows:
            if not r.get("kind") or "parent_version" not in r or "clients" not in r:
                errors.append(f"half-visible v{r['version']}: {sorted(r)}")
            if r.get("kind") == "unlearned":
                if not r.get("report_digest") or not r.get("verdict"):
                    errors.append(f"unlearned v{r['version']} listed without its verdict/report digest")
                if r["version"] in fetched:
                    continue
                try:
                    fetch_report(url, "served", r["version"], dest)
                    fetched.add(r["version"])
                except Exception as e:
                    errors.append(f"report v{r['version']}: {e.__class__.__name__}: {e}")
        seen.append(len(rows))
        stop.wait(2.0)  # a reader that polls, as a dashboard or a reviewer's script would


def test_two_successive_withdrawals_recorded_on_a_real_server(server, tmp_path):
    """... while 20 concurrent readers list the lineage and fetch reports: none fails, none sees half a version."""
    import threading

    stop, seen, errors = threading.Event(), [], []
    readers = [threading.Thread(target=_reader, args=(server["url"], stop, seen, errors, tmp_path / f"r{i}"))
               for i in range(20)]
    for t in readers:
        t.start()
    try:
        p = subprocess.run(CLI + ["simulate", "--quiet", "--clients", "3", "--rounds", "2", "--withdraw", "0@1", "--withdraw", "2",
                                  "--no-reference", "--tracking-uri", server["url"], "--out", str(tmp_path / "out"),
                                  "--model-name", "served"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        stop.set()
        for t in readers:
            t.join(120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not errors, errors[:5]
    assert len(seen) >= 20 and max(seen) == 4 and len(set(seen)) >= 2  # the readers saw versions appear
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


def test_delete_policy_erases_the_superseded_version_on_a_real_server(server, tmp_path):
    """--erase-superseded delete: after an exact (retrained) withdrawal the old version's weights cannot be
    downloaded from the server any more; the ledger records what was erased and lineage keeps a tombstone."""
    import mlflow

    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    p = subprocess.run(CLI + ["simulate", "--quiet", "--clients", "3", "--rounds", "1", "--withdraw", "0", "--method", "retrain",
                              "--erase-superseded", "delete", "--ledger", ledger, "--tracking-uri", server["url"],
                              "--out", str(tmp_path / "out"), "--model-name", "erased"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    from unlearn_fl.ledger import Ledger

    entries = Ledger(ledger).entries(model_name="erased")
    assert [e.state for e in entries] == ["received", "running", "done", "erased"]
    gone = entries[-1].body["versions"]
    assert [v["version"] for v in gone] == ["1"] and gone[0]["policy"] == "delete"
    uri = gone[0]["artefacts"][0]
    assert uri.startswith("mlflow-artifacts:")  # erased through the server, not on a local disk
    mlflow.set_tracking_uri(server["url"])
    with pytest.raises(Exception):
        mlflow.artifacts.download_artifacts(artifact_uri=uri + "/data/model.pt2", dst_path=str(tmp_path / "dl"))
    c = MlflowClient(server["url"])
    assert [str(v.version) for v in c.search_model_versions("name='erased'")] == ["2"]
    assert str(c.get_model_version_by_alias("erased", "production").version) == "2"
    assert c.get_model_version("erased", "2").description.startswith("Unlearned client(s) 0 (request wr-")
    out = subprocess.run(CLI + ["lineage", "--tracking-uri", server["url"], "--model-name", "erased", "--json", "--ledger", ledger],
                         capture_output=True, text=True, timeout=300)
    rows = {r["version"]: r for r in json.loads(out.stdout)}
    assert rows["1"]["erasure"] == "delete" and rows["1"]["clients"] == "0,1,2" and rows["1"]["erased_by"] == entries[0].request_id
    assert not [f for f in (server["dir"] / "artifacts").rglob("model.pt2") if gone[0]["model_id"] in str(f)]


def _delaying_proxy(target_port: int, first_delay: float) -> int:
    """A TCP relay on 127.0.0.1 to the server: its first connection waits `first_delay` s before it is relayed
    (a busy server), the others at once. Returns its port and the list it appends each accepted connection to."""
    import socket
    import threading

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    delays, accepted = [first_delay], []

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            conn, _ = lsock.accept()
            accepted.append(conn)
            wait = delays.pop() if delays else 0.0

            def relay(conn=conn, wait=wait):
                time.sleep(wait)
                up = socket.create_connection(("127.0.0.1", target_port))
                threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
                pipe(up, conn)

            threading.Thread(target=relay, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1], accepted


def test_a_busy_server_delays_the_check_without_failing_it_or_changing_mlflow_settings(server, monkeypatch):
    """The check before a run waits longer for a server that is slow to answer (its first try times out after 10 s)
    instead of refusing the run, and it leaves MLflow's HTTP retries and timeout as the process had them: the run
    it admits records with MLflow's own retries."""
    import os

    from unlearn_fl.tracking import check_tracking_uri

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    port, accepted = _delaying_proxy(int(server["url"].rsplit(":", 1)[1]), first_delay=15.0)
    check_tracking_uri(f"http://127.0.0.1:{port}", model_name="busy")  # raises TrackingError if it gave up
    assert len(accepted) >= 2  # the first connection was given up on (its reply comes after 15 s), then tried again
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
