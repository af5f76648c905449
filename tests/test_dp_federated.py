"""DP in a real Flower simulation: Opacus DP-SGD on clients, Flower's central DP wrapper; accounting checked."""

import json
import subprocess
import sys

import pytest

from unlearn_fl.accounting.accountant import account

CLI = [sys.executable, "-m", "unlearn_fl.cli", "simulate", "--quiet", "--clients", "3", "--rounds", "2", "--no-reference"]


def _run(d, *args):
    p = subprocess.run(CLI + ["--tracking-uri", f"sqlite:///{d / 'm.db'}", "--out", str(d / "out"), *args],
                       capture_output=True, text=True, timeout=900, cwd=d)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((d / "out" / "forgetting_report.json").read_text())


def test_dp_sgd_clients_are_accounted_and_the_audit_stays_below_the_accountant(tmp_path):
    """On the CNN, whose Conv2d and Linear layers both go through Opacus's per-sample gradients (an MLP's DP-SGD run,
    Linear layers only, is tests/test_faults.py's small DP run)."""
    r = _run(tmp_path, "--dp-noise", "1.2", "--dp-clip", "1.0", "--withdraw", "0", "--model", "cnn")
    acc = r["accounting"]
    assert acc["accountant"] == "rdp" and acc["noise_multiplier"] == 1.2 and acc["max_grad_norm"] == 1.0
    assert sorted(acc["per_client"]) == ["1", "2"]  # the withdrawn client is not part of the release
    # The reported ε is Opacus's RDP accountant for the reported sampling rate and steps.
    assert acc["epsilon"] == pytest.approx(account(1.2, acc["sample_rate"], acc["steps"], acc["delta"]).epsilon, rel=1e-9)
    assert acc["epsilon"] > 0
    # Soundness: what the audit certifies can never exceed what the accountant allows; the verdict reports both.
    assert r["audit"]["epsilon_lower"] <= acc["epsilon"]
    assert r["audit"]["epsilon_interval"] == [r["audit"]["epsilon_lower"], acc["epsilon"]] and acc["unit"] == "record"
    # Row-level DP does not certify a whole site's withdrawal (group privacy over its rows is far above any target).
    assert r["audit"]["decided_by"] != "accounting"


def test_flower_central_dp_wrapper_is_accounted_at_client_level(tmp_path):
    r = _run(tmp_path, "--central-dp-noise", "0.8", "--central-dp-clip", "5.0", "--unlearn-rounds", "1", "--epsilon-target", "40")
    acc = r["accounting"]
    assert acc["sample_rate"] == 1.0 and acc["noise_multiplier"] == 0.8
    # 2 training rounds and 1 unlearning round went through the DP aggregation.
    assert acc["steps"] == 3
    assert acc["epsilon"] == pytest.approx(account(0.8, 1.0, 3, acc["delta"]).epsilon, rel=1e-9)
    # Site-level DP covers a one-site withdrawal: where the audit cannot show forgetting, the accountant's
    # ε within the target certifies it, and the verdict says that accounting carried it.
    a = r["audit"]
    assert acc["unit"] == "client" and a["epsilon_interval"][1] == acc["epsilon"] and a["epsilon_lower"] <= acc["epsilon"]
    assert acc["epsilon"] <= 40 and not any(p["has_power"] for p in a["power"])  # the setting: DP on, nothing memorised
    if a["unchanged"]:  # the noisy round cost too much accuracy and was rolled back: nothing to certify
        assert a["verdict"] == "failed" and "rolled back" in a["unchanged"]
    else:
        assert a["verdict"] == "passed" and a["decided_by"] == "accounting"
        assert any("certified by accounting" in x for x in a["reasons"])
        assert any("no membership signal beyond the allowed gap" in x for x in a["reasons"])  # the audit's blindness is still said
