"""Load: a burst of 200 withdrawal requests from 4 processes against a running federation (real Flower simulation).

Each request is a different person's (its own salt, so its own id), and 25 are also sent a second
time from another process. Every one must end in the ledger exactly once, with a final state.
"""

import multiprocessing as mp
import subprocess
import sys
import time

from unlearn_fl.ledger import Ledger

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


def _submit(requests_dir: str, worker: int, n: int) -> None:
    from unlearn_fl.cli import main

    for i in range(n):
        # Worker 0's first request withdraws 30% of site 2; all others ask site 1 to leave entirely.
        args = ["--client", "2", "--fraction", "0.3"] if (worker, i) == (0, 0) else ["--client", "1"]
        assert main(["withdraw", *args, "--salt", f"person-{worker}-{i}", "--reason", "GDPR Art. 17",
                     "--requests-dir", requests_dir]) == 0
    for i in range(0, n, 10):  # the same requests again, from the next process
        other = (worker + 1) % 4
        args = ["--client", "2", "--fraction", "0.3"] if (other, i) == (0, 0) else ["--client", "1"]
        assert main(["withdraw", *args, "--salt", f"person-{other}-{i}", "--reason", "GDPR Art. 17",
                     "--requests-dir", requests_dir]) == 0


def test_200_requests_from_4_processes_each_settled_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = CLI + ["simulate", "--quiet", "--clients", "3", "--rounds", "40", "--local-epochs", "1", "--withdraw", "none", "--no-reference",
                 "--unlearn-rounds", "1", "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--model-name", "m",
                 "--requests-dir", str(tmp_path / "requests")]
    fed = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "unlearn-ledger.db"
    for _ in range(600):
        if db.exists() or fed.poll() is not None:
            break
        time.sleep(0.1)
    assert fed.poll() is None, "the federation ended before the burst"
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_submit, args=(str(tmp_path / "requests"), w, 50)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
        assert w.exitcode == 0
    assert fed.poll() is None, "the federation ended before the whole burst was submitted: give it more --rounds"
    out, err = fed.communicate(timeout=900)
    assert fed.returncode == 3, err[-3000:]  # 3: the run finished, and some requests were not applied (aborted)

    ledger = Ledger(f"sqlite:///{db}")
    entries = ledger.entries()
    received = [e.request_id for e in entries if e.state == "received"]
    assert len(received) == len(set(received)) == 200  # none lost, none duplicated
    finals = {}
    for e in entries:
        if e.state in ("done", "failed", "aborted"):
            assert e.request_id not in finals, f"{e.request_id} settled twice"
            finals[e.request_id] = e
    assert set(finals) == set(received)  # every one has a final state
    done = [e for e in finals.values() if e.state == "done"]
    assert len(done) == 2  # site 2's 30%, and the first of site 1's requests
    assert all("already withdrew all their data" in e.body["reason"] for e in finals.values() if e.state == "aborted")
    assert ledger.verify() is None
    assert not list((tmp_path / "requests" / "pending").glob("*.json"))
