"""`python -m benchmarks.run` end to end on a tiny setting, so the benchmark cannot rot (one real Flower run)."""

import importlib.util
import json
from pathlib import Path

import pytest

# By path: opacus installs an unrelated top-level package named `benchmarks`.
_spec = importlib.util.spec_from_file_location("unlearn_benchmarks_run", Path(__file__).parents[1] / "benchmarks" / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


OURS = "ours: default (loss law vs holdout)"


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """One `python -m benchmarks.run` on the smoke setting with a baseline that stores history beside others."""
    stem = tmp_path_factory.mktemp("harness") / "smoke"
    rc = run.main(["--settings", "smoke", "--seeds", "0", "--k", "2", "--methods", "finetune", "federaser", "halimi-pga",
                   OURS, "--out", str(stem)])
    assert rc == 0
    return stem


def test_harness_runs_every_listed_method_side_by_side(harness):
    stem = harness
    out = json.loads(stem.with_suffix(".json").read_text())
    assert out["meta"]["cores"] >= 1 and out["meta"]["seeds"] == [0]
    rows = out["summary"]["smoke"]["methods"]
    assert set(rows) == {"retrain", "finetune", "federaser", "halimi-pga", OURS}
    for label, r in rows.items():
        assert 0 <= r["test_acc"] <= 1 and r["examples"] > 0 and r["bytes"] > 0 and r["seconds"] > 0
        assert r["rmia_auc"] is not None and 0 <= r["forgetting_quality"] <= 1
        if label != "retrain":
            assert "forget_acc_gap" in r and r["rounds"] <= (3 if label == "halimi-pga" else 2)  # pga: its ascent step, then 2 FL rounds
    # the same run's retraining is the yardstick: its compute over the method's, where a row passed forward only
    # (no gradient) costs a third of a row passed forward and backward
    raw = out["runs"][0]["methods"]
    work = lambda label: sum(c["examples"] + c["forward"] / 3 for c in raw[label]["cost"])
    assert all(c["forward"] == 0 for label in ("retrain", "finetune") for c in raw[label]["cost"])
    assert rows["finetune"]["compute_ratio"] == pytest.approx(work("retrain") / work("finetune")) == pytest.approx(
        sum(c["examples"] for c in raw["retrain"]["cost"]) / sum(c["examples"] for c in raw["finetune"]["cost"]))
    ours = OURS
    assert all(c["forward"] > 0 for c in raw[ours]["cost"])  # its holdout statistic and stopping checks
    assert rows[ours]["compute_ratio"] == pytest.approx(work("retrain") / work(ours))
    assert rows[ours]["compute_ratio"] < rows[ours]["rows_ratio"]
    md = stem.with_suffix(".md").read_text()
    assert "| finetune |" in md and "python -m benchmarks.run" in md and "settings `smoke`" in md


@pytest.mark.parametrize("k", ["1", "0"])
def test_harness_refuses_k_below_two(capsys, k):
    assert run.main(["--settings", "smoke", "--k", k]) == 2  # 0 once meant "not given" and ran the whole suite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--k" in err[0]


def test_a_methods_result_does_not_depend_on_the_other_methods_listed(harness):
    """Halimi et al.'s reference model comes from the stored last training round; the history was once stored only
    when FedEraser was listed, so pga alone asked the sites for an extra round and measured differently."""
    alone = run.run_setting("smoke", 0, 2, ["retrain", "halimi-pga"])
    beside = json.loads(harness.with_suffix(".json").read_text())["runs"][0]  # finetune, federaser and ours beside it
    a, b = alone["methods"]["halimi-pga"], beside["methods"]["halimi-pga"]
    assert a["rounds"] == b["rounds"] and a["notes"] == b["notes"]
    for key in ("test_acc", "forget_acc", "loss_auc", "rmia_auc"):
        assert a[key] == b[key], key
    assert [c["examples"] for c in a["cost"]] == [c["examples"] for c in b["cost"]]


def test_the_full_suite_is_every_benchmark_setting_and_not_the_test_suites_smoke_setting():
    assert run.SUITES["full"]["settings"] == [name for name in run.SETTINGS if name != "smoke"]
    assert set(run.SUITES["quick"]["settings"]) < set(run.SUITES["full"]["settings"])
    assert len(run.SUITES["full"]["settings"]) == 6 and run.SUITES["full"]["seeds"] == [0, 1, 2, 3, 4]


def test_the_run_writes_its_pareto_plot_and_replot_rewrites_the_same_table(harness, capsys):
    import matplotlib.image

    stem = harness
    png = stem.parent / "smoke-pareto.png"
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400  # one row of two panels
    md = stem.with_suffix(".md").read_text()
    front_line = next(x for x in md.splitlines() if x.startswith("Pareto front"))
    # retraining is at cost 1 and |RMIA gap| 0: nothing cheaper is as close, so it closes that front
    assert front_line.split("; by score")[0].endswith("`retrain`")
    assert "Plots: `smoke-pareto.png`" in md
    png.unlink()
    assert run.main(["--replot", str(stem.with_suffix(".json"))]) == 0
    assert stem.with_suffix(".md").read_text() == md and png.is_file()  # nothing rerun, the same table
    bad = stem.parent / "not-results.json"
    bad.write_text('{"rows": []}')
    capsys.readouterr()
    assert run.main(["--replot", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--replot" in err[0] and "give the .json that a run wrote" in err[0]


def test_the_pareto_front_keeps_exactly_the_undominated_points():
    pareto = run._pareto()
    points = {"a": (1.0, 3.0), "tie": (1.0, 3.0), "b": (2.0, 2.0), "worse-b": (2.0, 3.0), "c": (3.0, 1.0),
              "costlier-c": (4.0, 1.0), "dominated": (3.5, 2.5)}
    assert pareto.pareto_front(points) == ["a", "tie", "b", "c"]
    assert pareto.pareto_front({"only": (1.0, 1.0)}) == ["only"]
    row = {"compute_ratio": 4.0, "rmia_auc_gap": -0.03, "score": 0.7}
    assert pareto.cost(row) == 0.25 and pareto.MEASURES["rmia"][1](row) == 0.03
    assert pareto.MEASURES["score"][1](row) == pytest.approx(0.3)
