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
    assert front_line.split("; by 1 − score")[0].endswith("`retrain`")
    assert "Plots: `smoke-pareto.png`" in md
    before = json.loads(stem.with_suffix(".json").read_text())
    png.unlink()
    assert run.main(["--replot", str(stem.with_suffix(".json"))]) == 0
    assert stem.with_suffix(".md").read_text() == md and png.is_file()  # nothing rerun, the same table
    assert json.loads(stem.with_suffix(".json").read_text()) == before  # the summary recomputed from the runs is the run's


def _record(seed: int, rmia: float, ref_rmia: float) -> dict:
    """A minimal results record of `run_setting`: one method beside retraining, whose RMIA AUC is given."""
    cost = [{"seconds": 1.0, "examples": 100, "forward": 0, "bytes": 10, "stores": "nothing"}]
    metrics = dict(test_acc=0.9, retain_acc=0.9, forget_acc=0.8, loss_auc=0.5, forgetting_quality=0.5)
    return {"setting": "s", "seed": seed, "n_forget": 10, "original": {"test_acc": 0.9},
            "methods": {"retrain": {"cost": [dict(cost[0], seconds=10.0, examples=1000)], "rounds": [20], **metrics, "rmia_auc": ref_rmia},
                        "m": {"cost": cost, "rounds": [1], **metrics, "rmia_auc": rmia}}}


def test_the_rmia_distance_is_the_median_of_each_seeds_absolute_gap():
    """Seeds that over-forget (gap −0.1) and under-forget (+0.1) must not cancel: signed median 0, distance 0.1."""
    summary = run.summarise([_record(0, 0.6, 0.5), _record(1, 0.4, 0.5), _record(2, 0.5, 0.5)])
    m = summary["s"]["methods"]["m"]
    assert m["rmia_auc_gap"] == pytest.approx(0.0) and m["rmia_auc_abs_gap"] == pytest.approx(0.1)
    assert run._pareto().MEASURES["rmia"][1](m) == pytest.approx(0.1)


@pytest.fixture
def results_copy(harness, tmp_path):
    """The harness's results JSON copied into a folder of its own."""
    path = tmp_path / "smoke.json"
    path.write_text(harness.with_suffix(".json").read_text())
    return path


BAD_REPLOTS = {
    "missing": (lambda d, p: ["--replot", str(d / "absent.json")], "no such file"),
    "a folder": (lambda d, p: (d / "dir.json").mkdir() or ["--replot", str(d / "dir.json")], "(a folder)"),
    "not JSON": (lambda d, p: (d / "x.json").write_text("{not json") and ["--replot", str(d / "x.json")], "not readable as JSON"),
    "empty": (lambda d, p: (d / "e.json").write_text("") or ["--replot", str(d / "e.json")], "not readable as JSON"),
    "no meta": (lambda d, p: (d / "m.json").write_text('{"runs": [], "summary": {}}') and ["--replot", str(d / "m.json")],
                "meta: Field required"),
    "meta without seeds": (lambda d, p: (d / "n.json").write_text(json.dumps(
        {**json.loads(p.read_text()), "meta": {k: v for k, v in json.loads(p.read_text())["meta"].items() if k != "seeds"}}))
        and ["--replot", str(d / "n.json")], "meta.seeds: Field required"),
    "no runs": (lambda d, p: (d / "r.json").write_text(json.dumps({**json.loads(p.read_text()), "runs": []}))
                and ["--replot", str(d / "r.json")], "runs list is empty"),
    "runs of another shape": (lambda d, p: (d / "o.json").write_text(json.dumps({**json.loads(p.read_text()), "runs": [{"x": 1}]}))
                              and ["--replot", str(d / "o.json")], "not this benchmark's records"),
    "a results file named .md": (lambda d, p: (d / "copy.md").write_text(p.read_text()) and ["--replot", str(d / "copy.md")],
                                 "give the .json file"),
    "an empty path": (lambda d, p: ["--replot", ""], "an empty path"),
    "with --out": (lambda d, p: ["--replot", str(p), "--out", str(d / "elsewhere")], "--out with it"),
    "with --suite": (lambda d, p: ["--replot", str(p), "--suite", "full"], "--suite with it"),
    "its .md is a folder": (lambda d, p: (d / "smoke.md").mkdir() or ["--replot", str(p)], "is not a file"),
}


@pytest.mark.parametrize("case", list(BAD_REPLOTS))
def test_a_bad_replot_exits_2_with_one_line_and_writes_nothing(results_copy, capsys, case):
    make, needle = BAD_REPLOTS[case]
    d = results_copy.parent
    argv = make(d, results_copy)
    listing = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*")}
    capsys.readouterr()
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and ("give" in err[0] or "move it away" in err[0]), err
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*")} == listing  # nothing written or replaced


def test_the_pareto_front_keeps_exactly_the_undominated_points():
    pareto = run._pareto()
    points = {"a": (1.0, 3.0), "tie": (1.0, 3.0), "b": (2.0, 2.0), "worse-b": (2.0, 3.0), "c": (3.0, 1.0),
              "costlier-c": (4.0, 1.0), "dominated": (3.5, 2.5)}
    assert pareto.pareto_front(points) == ["a", "tie", "b", "c"]
    assert pareto.pareto_front({"only": (1.0, 1.0)}) == ["only"]
    row = {"compute_ratio": 4.0, "rmia_auc_gap": -0.01, "rmia_auc_abs_gap": 0.03, "score": 0.7}
    assert pareto.cost(row) == 0.25 and pareto.MEASURES["rmia"][1](row) == 0.03  # the median of |gap|, not |median gap|
    assert pareto.MEASURES["1 − score"][1](row) == pytest.approx(0.3)
