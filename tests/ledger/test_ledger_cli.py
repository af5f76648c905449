"""`unlearn-fl ledger` (list, --json, --verify) and a bad --ledger, in-process through the CLI's main()."""

import json
import sqlite3

from unlearn_fl.cli import main
from unlearn_fl.ledger import Ledger
from unlearn_fl.requests import WithdrawalRequest


def _ledger(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/unlearn-ledger.db"
    ledger = Ledger(url)
    for i in range(2):
        r = WithdrawalRequest(client_ids=(i,), fraction=0.5, salt=str(i), reason="consent revoked")
        ledger.receive(r, "clinic")
        ledger.append(r.request_id, "clinic", "running", {"attempt": 1, "n_forget": 40})
        ledger.append(r.request_id, "clinic", "done", {"version": str(i + 2), "parent_version": str(i + 1), "verdict": "passed"})
    return url


def test_ledger_lists_and_verifies(tmp_path, capsys):
    url = _ledger(tmp_path)
    assert main(["ledger", "--ledger", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["received", "running", "done"] * 2
    assert rows[0]["body"]["request"]["reason"] == "consent revoked" and rows[0]["body"]["scope"] == "fraction"
    assert main(["ledger", "--ledger", url, "--verify", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 0
    assert "6 entries, hash chain intact" in capsys.readouterr().out
    # The default location: beside the sqlite store named by --tracking-uri.
    assert main(["ledger", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--verify"]) == 0


def test_the_table_shows_every_kind_of_entry(tmp_path, capsys):
    url = _ledger(tmp_path)
    ledger = Ledger(url)
    ledger.append("invalid-0123456789ab", "clinic", "received", {"invalid": True, "origin": "submitted"})
    ledger.append("invalid-0123456789ab", "clinic", "aborted", {"reason": "invalid request file x.json: not valid JSON"})
    ledger.append(ledger.entries()[2].request_id, "clinic", "erased", {"policy": "delete", "versions": [{"version": "1"}]})
    assert main(["ledger", "--ledger", url]) == 0
    out = capsys.readouterr().out
    assert "invalid request file" in out and "erased" in out and "consent revoked" in out


def test_verify_exits_1_naming_the_first_bad_entry(tmp_path, capsys):
    url = _ledger(tmp_path)
    con = sqlite3.connect(tmp_path / "unlearn-ledger.db")
    con.execute("UPDATE withdrawal_ledger SET body=? WHERE seq=6", (json.dumps({"version": "2", "verdict": "passed"}),))
    con.commit()
    con.close()
    assert main(["ledger", "--ledger", url, "--verify", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "entry 6" in err[0] and "changed" in err[0]


def test_a_ledger_that_cannot_be_opened_is_exit_2_before_anything_is_written(tmp_path, capsys):
    for argv, needle in ((["ledger", "--ledger", f"sqlite:///{tmp_path}/nowhere/l.db"], "does not exist"),
                         (["ledger", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], "no ledger at"),
                         (["simulate", "--quiet", "--ledger", "nosuchdb://x", "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
                           "--out", str(tmp_path / "out")], "SQLAlchemy URL")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no report, no ledger
