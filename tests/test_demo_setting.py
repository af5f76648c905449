"""`make demo`'s setting: the model before unlearning measurably remembers client 0, and unlearning removes much of it.

The flags are read from the Makefile, so the demo README describes cannot drift from what this test runs.
Asserts what the federation measured (accuracies, attack AUCs, rounds, bytes), never a wall-clock time.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_fl.report.schema import ForgettingReport

ROOT = Path(__file__).resolve().parents[1]


def demo_flags() -> list[str]:
    m = re.search(r"^DEMO_FLAGS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "the Makefile's demo flags (DEMO_FLAGS) are gone"
    return shlex.split(m.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "simulate", *demo_flags(), "--quiet",
                           "--tracking-uri", f"sqlite:///{d / 'mlflow.db'}", "--out", str(d / "report")],
                          capture_output=True, text=True, timeout=900, cwd=d)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ForgettingReport.model_validate_json(next((d / "report").glob("*/forgetting_report.json")).read_text())


def _auc(audit, attack):
    return next(a.auc for a in audit.attacks if a.attack == attack)


def test_the_model_before_unlearning_remembers_the_withdrawing_client(report):
    u, a = report.utility, report.audit
    assert u.forget_acc_before - u.forget_acc_retrain > 0.15  # the canaries are fitted; a model that never saw them cannot
    assert _auc(a.before, "rmia-offline") > 0.65  # per-example attack (reference: the retrained model)
    # Not asserted: the empirical ε lower bound before unlearning. With 230 members it is 0.6 for seeds 0 and 4
    # but 0 for seeds 1 to 3 (measured): too little power to carry the claim on one machine's floats.


def test_unlearning_removes_part_of_it_cheaply(report):
    u, a, c = report.utility, report.audit, report.cost
    assert u.forget_acc_after < u.forget_acc_before - 0.1
    assert _auc(a.after, "rmia-offline") < _auc(a.before, "rmia-offline") - 0.05
    assert u.test_acc_after >= u.test_acc_retrain - 0.01
    assert c.unlearn_rounds <= 2 < c.retrain_rounds and c.unlearn_bytes < c.retrain_bytes / 3
