"""A server killed with SIGKILL in the middle of an unlearning, then restarted (real Flower simulations).

The request is retried from its recorded state; `production` never points at anything but a
complete version; no version is left without its report; the ledger loses nothing.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from unlearn_fl.ledger import Ledger
from unlearn_fl.tracking import TAG

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(p.name))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ledger_state(db: Path, rid: str) -> str | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        row = con.execute("SELECT state FROM withdrawal_ledger WHERE request_id=? ORDER BY seq DESC LIMIT 1", (rid,)).fetchone()
        con.close()
        return row[0] if row else None
    except sqlite3.Error:
        return None


def _production(uri: str) -> str | None:
    try:
        return str(MlflowClient(uri).get_model_version_by_alias("m", "production").version)
    except Exception:
        return None


@pytest.fixture(scope="module")
def crashed_and_restarted(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    sub = subprocess.run(CLI + ["withdraw", "--client", "1", "--fraction", "0.5", "--reason", "consent revoked",
                                "--requests-dir", str(d / "requests")], capture_output=True, text=True, cwd=d)
    assert sub.returncode == 0, sub.stderr
    rid = sub.stdout.split()[0]
    cmd = CLI + ["simulate", "--quiet", "--clients", "3", "--rounds", "1", "--withdraw", "none", "--tracking-uri", uri,
                 "--out", str(d / "out"), "--model-name", "m", "--requests-dir", str(d / "requests")]
    proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    db = d / "unlearn-ledger.db"
    deadline, killed_server = time.time() + 600, None
    while time.time() < deadline and proc.poll() is None:
        if _ledger_state(db, rid) == "running" and _production(uri) is not None:
            time.sleep(1.0)  # the model before unlearning is registered: now inside the unlearning rounds
            tree = _descendants(proc.pid)
            server = [p for p in tree if "flwr-simulation" in _cmdline(p)]  # the process running the ServerApp
            assert server, "no ServerApp process found"
            state_before = _ledger_state(db, rid)
            production_before = _production(uri)
            os.kill(server[0], signal.SIGKILL)
            killed_server = (state_before, production_before)
            time.sleep(5)
            for p in [proc.pid, *tree]:  # then the rest of that federation (superlink, ray), as a crashed host would lose it
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.2)
    proc.wait(60)
    assert killed_server is not None, "the unlearning never started"
    after_kill = dict(state=_ledger_state(db, rid), production=_production(uri))
    restart = subprocess.run(cmd, capture_output=True, text=True, cwd=d, timeout=900)
    return dict(dir=d, uri=uri, rid=rid, killed=killed_server, after_kill=after_kill, restart=restart)


def test_the_kill_left_the_request_running_and_production_untouched(crashed_and_restarted):
    c = crashed_and_restarted
    state_before, production_before = c["killed"]
    assert state_before == "running"
    assert c["after_kill"]["state"] == "running"  # not lost, not reported as done
    assert c["after_kill"]["production"] == production_before  # never moved to a half-written version


def test_the_restart_retries_the_request_once(crashed_and_restarted):
    c = crashed_and_restarted
    assert c["restart"].returncode == 0, c["restart"].stdout[-2000:] + c["restart"].stderr[-2000:]
    ledger = Ledger(f"sqlite:///{c['dir'] / 'unlearn-ledger.db'}")
    states = [e.state for e in ledger.entries(c["rid"])]
    assert states == ["received", "running", "running", "done"], states
    retry = ledger.entries(c["rid"])[2].body
    assert retry["attempt"] == 2 and "retry_after" in retry
    assert ledger.verify() is None
    assert not list((c["dir"] / "requests" / "pending").glob("*.json"))  # the request file is settled too


def test_no_version_exists_without_its_report(crashed_and_restarted):
    c = crashed_and_restarted
    client = MlflowClient(c["uri"])
    for mv in client.search_model_versions("name='m'"):
        tags = mv.tags or {}
        assert TAG + "kind" in tags, f"v{mv.version} has no lineage tags"
        if tags[TAG + "kind"] == "unlearned":
            names = [a.path for a in client.list_artifacts(mv.run_id, "report")]
            assert "report/forgetting_report.json" in names and TAG + "report_digest" in tags
    done = Ledger(f"sqlite:///{c['dir'] / 'unlearn-ledger.db'}").entries(c["rid"])[-1].body
    mv = client.get_model_version("m", done["version"])
    assert mv.tags[TAG + "request_ids"].split(",") == [c["rid"]]
    assert mv.tags[TAG + "ledger_entry"].split(":")[0] == str(Ledger(f"sqlite:///{c['dir'] / 'unlearn-ledger.db'}").entries(c["rid"])[-1].seq)
