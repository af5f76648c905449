"""Bad input: exit code 2, one line on stderr naming the problem, nothing written to the registry."""

import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "unlearn_fl.cli", "simulate", "--quiet"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--withdraw", "7"], "unknown client id 7"),
        (["--withdraw", "a,b"], "--withdraw 'a,b'"),
        (["--forget-fraction", "1.5"], "outside (0, 1]"),
        (["--forget-fraction", "0"], "outside (0, 1]"),
        (["--clients", "0"], "at least one client"),
        (["--dataset", "missing.csv", "--target", "y"], "no such file"),
        (["--dataset", "bad.csv", "--target", "y"], "non-numeric values"),
        (["--dataset", "bad.csv"], "needs a target column"),
        (["--tracking-uri", "sqlite:///no/such/dir/m.db"], "folder no/such/dir does not exist"),
        (["--tracking-uri", "http://127.0.0.1:9/"], "cannot reach MLflow server"),
        (["--tracking-uri", "ftp://x"], "unsupported tracking URI"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--method-config", "{bad"], "not valid JSON"),
        (["--method-config", '{"gamma": -1}'], "gamma"),
        (["--audit-confidence", "1.5"], "--audit-confidence: Input should be less than 1"),
        (["--audit-references", "-1"], "--audit-references: Input should be greater than or equal to 0"),
        (["--epsilon-target", "-3"], "--epsilon-target"),
        (["--dp-noise", "-1"], "--dp-noise"),
        (["--method-config", '{"nope": 1}'], "--method-config key 'nope'"),
        (["--method", "scrub", "--method-config", '{"retain_epochs": 2}'], "scrub runs its own local step: leave retain_epochs unset"),
        (["--method", "retrain", "--method-config", '{"reference_every": 3}'], "retrain reads no holdout reference"),
        (["--method-config", '{"reference_every": 3, "reference_batch": 16}'], "two ways to pass the holdout's reference"),
        (["--audit-reference-mode", "online"], "needs --audit-references 2 or more"),
        (["--no-reference", "--audit-references", "2"], "drop --no-reference"),
        (["--audit-reference-mode", "weird"], "invalid choice: 'weird'"),
        (["--model-name", "clinic/a"], "--model-name: model name 'clinic/a' contains '/'"),
        (["--model-name", "a@prod"], "models:/NAME/VERSION and models:/NAME@ALIAS URIs cannot name it"),
        (["--withdraw", "0,1,2", "--forget-fraction", "0.999"], "training rows rounds to all"),
        (["--dataset", "price.csv", "--target", "y"], "looks continuous"),
        (["--canaries", "2"], "between 0 and 1, e.g. 0.25"),
        (["--canary-clients", "9"], "no effect without --canaries"),
        (["--canary-kind", "mislabel"], "no effect without --canaries"),
        (["--canaries", "0.2", "--canary-clients", "0,,1"], "--canary-clients '0,,1'"),
        (["--canaries", "0.2", "--canary-clients", "9"], "canary client(s) [9] out of range"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_cwd, args, needle):
    (tmp_cwd / "bad.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)) + "junk,1\n")
    (tmp_cwd / "price.csv").write_text("x,y\n" + "".join(f"{i},{i * 1.37:.2f}\n" for i in range(40)))
    p = subprocess.run(CLI + args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert needle in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_cwd / "mlflow.db").exists() and not (tmp_cwd / "unlearn-report").exists()


@pytest.mark.parametrize("args,needle", [
    (["--confidence", "1.5"], "--confidence: Input should be less than 1"),
    (["--epsilon-target", "-1"], "--epsilon-target"),
    (["--lira-refs", "1"], "--lira-refs must be 0 (off) or at least 2"),
])
def test_audit_bad_settings_exit_2_before_reading_anything(tmp_cwd, args, needle):
    p = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "audit", "--model-uri", "models:/m/1", "--forget", "f.csv",
                        "--holdout", "h.csv", "--target", "y", *args], capture_output=True, text=True, timeout=120)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr
