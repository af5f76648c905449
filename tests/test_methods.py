"""Data-point unlearning methods on a small model, against a model retrained without D_f."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import roc_auc_score

from unlearn_fl.data import DataSpec, federation
from unlearn_fl.methods import METHODS, get_method, marginal_criterion
from unlearn_fl.methods.loop import SplitOutputs, matched_holdout_metrics, matched_loss_auc, split_outputs
from unlearn_fl.methods.marginal import PAPER_CONFIG
from unlearn_fl.models import evaluate, make_model, per_example_loss, train_epochs


@pytest.fixture(scope="module")
def e2():
    """Digits; forget 75% of the training 3s (the authors' E2 shape); holdout = half of the test split."""
    fed = federation(DataSpec(num_clients=1, holdout_fraction=0.0, seed=0))
    tr, te = fed.scaled(fed.client_train_idx[0]), fed.scaled(fed.test_idx)
    rng = np.random.default_rng(0)
    threes = np.where(tr.y == 3)[0]
    f = rng.choice(threes, int(0.75 * len(threes)), replace=False)
    mask = np.zeros(len(tr), bool)
    mask[f] = True
    forget, retain = tr.subset(np.where(mask)[0]), tr.subset(np.where(~mask)[0])
    holdout, test = te.subset(np.arange(0, len(te), 2)), te.subset(np.arange(1, len(te), 2))
    torch.manual_seed(0)
    original = make_model(64, 10, (128, 64), seed=0)
    train_epochs(original, tr, 40, 1e-3, 64, seed=0)
    retrained = get_method("retrain").unlearn(original, retain, forget, holdout, get_method("retrain").make_config(epochs=40)).model
    return dict(retain=retain, forget=forget, holdout=holdout, test=test, original=original, retrained=retrained)


def test_registry_names_and_configs():
    assert set(METHODS) >= {"marginal", "retrain", "finetune", "gradient-ascent"}
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(Exception):
        get_method("marginal").make_config(gamma=-1)


def test_marginal_moves_forget_loss_toward_retrained_and_keeps_retain_accuracy(e2):
    m = get_method("marginal")
    res = m.unlearn(e2["original"], e2["retain"], e2["forget"], e2["holdout"], m.make_config(**PAPER_CONFIG))
    loss = lambda model: per_example_loss(model, e2["forget"]).mean()
    before, after, ref = loss(e2["original"]), loss(res.model), loss(e2["retrained"])
    assert ref > before  # the retrained model never saw D_f
    assert after > before, res.stopped_because  # unlearning moved the forget loss toward the retrained one
    assert abs(after - ref) < abs(before - ref)
    assert evaluate(res.model, e2["retain"])[0] >= evaluate(e2["original"], e2["retain"])[0] - 0.03
    assert evaluate(e2["original"], e2["forget"])[0] == 1.0  # it was memorised ...
    # ... and the original model is not modified in place.
    assert evaluate(e2["original"], e2["forget"])[0] == 1.0


def test_without_early_stopping_the_penalty_over_forgets_and_the_default_stops_before(e2):
    """docs/method.md §2: driving Î to zero collapses forget accuracy far below the retrained level."""
    m = get_method("marginal")
    ref_acc = evaluate(e2["retrained"], e2["forget"])[0]
    trap = m.unlearn(e2["original"], e2["retain"], e2["forget"], e2["holdout"], m.make_config(**PAPER_CONFIG, early_stop=False, epochs=20))
    default = m.unlearn(e2["original"], e2["retain"], e2["forget"], e2["holdout"], m.make_config(**PAPER_CONFIG))
    trap_acc, default_acc = evaluate(trap.model, e2["forget"])[0], evaluate(default.model, e2["forget"])[0]
    assert trap_acc < ref_acc - 0.3, (trap_acc, ref_acc)
    assert default_acc > ref_acc - 0.1, (default_acc, ref_acc, default.stopped_because)
    assert default.stopped_because != "max epochs"
    assert evaluate(default.model, e2["test"])[0] > evaluate(trap.model, e2["test"])[0]


def test_gradient_ascent_and_finetune_run_behind_the_same_interface(e2):
    for name in ("finetune", "gradient-ascent"):
        m = get_method(name)
        res = m.unlearn(e2["original"], e2["retain"], e2["forget"], e2["holdout"], m.make_config(epochs=2))
        assert evaluate(res.model, e2["test"])[0] > 0.85, name


def test_criterion_is_zero_for_identical_sets_and_bounds_detection(e2):
    r = marginal_criterion(e2["original"], e2["retain"], e2["retain"])
    assert r.mi == pytest.approx(0.0, abs=1e-9) and r.tv_bound == pytest.approx(0.0, abs=1e-4)
    c = marginal_criterion(e2["original"], e2["forget"], e2["retain"], epsilon=1e-6)
    assert c.mi > 0 and c.satisfied is False and 0 < c.tv_bound <= 1


@pytest.mark.parametrize("name", ["federaser", "pga"])
def test_federated_only_methods_refuse_central_use_with_the_way_to_run_them(e2, name):
    m = get_method(name)
    with pytest.raises(ValueError, match=f"--method {name}"):
        m.unlearn(e2["original"], e2["retain"], e2["forget"], e2["holdout"], m.make_config())


def test_accuracy_resolution_closed_form():
    from unlearn_fl.methods.loop import accuracy_resolution

    assert accuracy_resolution(0.76, 58) == pytest.approx(1.645 * np.sqrt(0.76 * 0.24 / 58))
    assert accuracy_resolution(1.0, 100) == pytest.approx(1.645 * np.sqrt(0.99 * 0.01 / 100))  # p clipped to 1 - 1/n
    assert accuracy_resolution(0.9, 0) == float("inf")
    assert accuracy_resolution(0.9, 10_000) < 0.01 < accuracy_resolution(0.9, 50)


def test_guards_fire_only_on_drops_the_holdout_resolves_and_only_the_unseen_rule_reaches_the_target(e2):
    """Guards set to 0 (the strictest): on a 40-row holdout one flipped row is 2.5 points, below what 40 rows
    resolve (1.645·√(p(1−p)/40), p clipped to [1/40, 39/40]: 4.1 points at p = 1), so it must not end the run;
    whatever ends it is either the unseen rule (target reached) or a drop larger than that."""
    m = get_method("marginal")
    small = e2["holdout"].subset(np.arange(40))
    cfg = m.make_config(**{**PAPER_CONFIG, "max_holdout_drop": 0.0, "max_matched_drop": 0.0, "epochs": 3})
    res = m.unlearn(e2["original"], e2["retain"], e2["forget"], small, cfg)
    start = evaluate(e2["original"], small)[0]
    p = min(max(start, 1 / 40), 39 / 40)
    resolution = 1.645 * np.sqrt(p * (1 - p) / 40)
    assert res.target_reached == ("looks unseen" in res.stopped_because)
    if res.stopped_because.startswith("holdout accuracy fell"):
        assert start - res.history[-1]["holdout_acc"] > resolution, res.stopped_because
    for h in res.history[:-1]:  # every check it went past was within the resolution
        assert start - h["holdout_acc"] <= resolution + 1e-9


def test_matched_effective_rows_closed_form():
    from unlearn_fl.methods.loop import matched_effective_rows

    # the forget set's class mix equals the holdout's: n_eff = n
    assert matched_effective_rows(np.array([0, 0, 1, 1]), np.array([0, 1])) == pytest.approx(4.0)
    # one class of 10 forget rows measured on 5 holdout rows of that class: n_eff = 100 / (100 / 5) = 5
    assert matched_effective_rows(np.array([0] * 5 + [1] * 50), np.full(10, 0)) == pytest.approx(5.0)
    # k = (3, 1) on n = (1, 9): (4)² / (9/1 + 1/9) = 16 / 9.111...
    assert matched_effective_rows(np.array([0] + [1] * 9), np.array([0, 0, 0, 1])) == pytest.approx(16 / (9 + 1 / 9))


# ------------------------------------------------------------------ the stopping rule's statistics, closed form

def _outputs(loss, correct=None):
    loss = np.asarray(loss, dtype=np.float64)
    correct = np.ones(len(loss), dtype=bool) if correct is None else np.asarray(correct)
    return SplitOutputs(correct, loss, float(correct.mean()) if len(loss) else float("nan"), float(loss.mean()) if len(loss) else float("nan"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6)), min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6)), min_size=1, max_size=30))
def test_matched_loss_auc_is_the_class_weighted_mann_whitney_auc(forget, holdout):
    """Per class c of the forget set (k_c rows), P(forget loss < holdout loss) + ½ P(tie) over the holdout rows of c
    (all holdout rows when c has none), averaged with weights k_c: sklearn's ROC AUC of −loss, class by class."""
    fy, fl = (np.array(v) for v in zip(*forget))
    hy, hl = (np.array(v) for v in zip(*holdout))
    fl, hl = fl / 2.0, hl / 2.0  # few distinct values: many ties
    expected = 0.0
    for c in np.unique(fy):
        h = hl[hy == c] if (hy == c).any() else hl
        f = fl[fy == c]
        scores, members = np.concatenate([-f, -h]), np.r_[np.ones(len(f)), np.zeros(len(h))]
        auc = roc_auc_score(members, scores) if len(set(scores)) > 1 else 0.5
        expected += (fy == c).sum() * auc
    assert matched_loss_auc(_outputs(fl), fy, _outputs(hl), hy) == pytest.approx(expected / len(fy), abs=1e-12)


def test_matched_holdout_metrics_reweight_the_holdout_to_the_forget_label_mix():
    hy = np.array([0, 0, 0, 1, 1, 2])
    h = _outputs([1.0, 2.0, 3.0, 10.0, 20.0, 7.0], [True, True, False, False, True, True])
    # Forget labels: three 0s, one 1, one 5 (absent from the holdout: every holdout row stands for it).
    acc, loss = matched_holdout_metrics(h, hy, np.array([0, 0, 0, 1, 5]))
    assert acc == pytest.approx((3 * (2 / 3) + 1 * 0.5 + 1 * (4 / 6)) / 5)
    assert loss == pytest.approx((3 * 2.0 + 1 * 15.0 + 1 * (43.0 / 6)) / 5)
    assert np.isnan(matched_holdout_metrics(_outputs([]), np.zeros(0), np.array([0]))[0])
    assert np.isnan(matched_loss_auc(_outputs([]), np.zeros(0), h, hy))


def test_split_outputs_agree_with_evaluate_and_per_example_loss(e2):
    out = split_outputs(e2["original"], e2["holdout"])
    assert (out.acc, out.mean_loss) == evaluate(e2["original"], e2["holdout"])
    assert np.array_equal(out.loss, per_example_loss(e2["original"], e2["holdout"]))
    assert out.acc == pytest.approx(out.correct.mean())


def test_forward_only_rows_are_counted_once_per_row_and_pass(e2):
    """`examples-forward` of a site's unlearning step: with the paper's objective against the holdout, the start
    passes the holdout forward once; every early-stopping check passes the forget set and the holdout once; every
    step passes the holdout once for its statistic, unless the start or a check has just done so. Nested layers are
    not counted again; finetune has none."""
    from unlearn_fl.engine.client_logic import local_unlearn

    forget, holdout = e2["forget"].subset(np.arange(40)), e2["holdout"].subset(np.arange(30))
    empty = forget.subset(np.zeros(0, dtype=np.int64))
    free = {"epochs": 2, "max_holdout_drop": 1.0, "max_matched_drop": 1.0, "stop_auc": 0.0, "reference": "holdout"}
    nf, nh = len(forget), len(holdout)
    for every in (1, 4):
        _, m = local_unlearn(e2["original"], holdout, empty, forget, "marginal", {**free, "check_every": every}, None, seed=0)
        steps = m["steps"]
        assert steps == 2 * -(-nf // 16) == 6 and m["examples-processed"] == 2 * nf
        checks = steps if every == 1 else 2  # steps 4 and 6: every 4th step, and the last
        own = steps - 1 - (checks - 1)  # steps 2..6 whose previous step was not checked (every 4: steps 2, 3, 4, 6)
        assert m["examples-forward"] == nh + own * nh + checks * (nf + nh)
    _, m = local_unlearn(e2["original"], holdout, empty, forget, "marginal", {**free, "early_stop": False}, None, seed=0)
    assert m["examples-forward"] == steps * nh
    # A reference at most 4 steps old: the start's pass serves steps 1-4, the check at step 4 serves steps 5-6.
    _, m = local_unlearn(e2["original"], holdout, empty, forget, "marginal",
                         {**free, "check_every": 4, "reference_every": 4}, None, seed=0)
    assert m["examples-forward"] == nh + 2 * (nf + nh)
    # A fresh random batch of 16 holdout rows per step instead of all 30; the checks pass all of them.
    _, m = local_unlearn(e2["original"], holdout, empty, forget, "marginal",
                         {**free, "check_every": 4, "reference_batch": 16}, None, seed=0)
    assert m["examples-forward"] == nh + steps * 16 + 2 * (nf + nh)
    # Without checks the reference is passed when first needed, then every 4 steps: steps 1 and 5.
    _, m = local_unlearn(e2["original"], holdout, empty, forget, "marginal",
                         {**free, "early_stop": False, "reference_every": 4}, None, seed=0)
    assert m["examples-forward"] == 2 * nh
    _, m = local_unlearn(e2["original"], holdout, e2["retain"].subset(np.arange(64)), empty, "finetune", {"epochs": 1}, None, seed=0)
    assert m["examples-forward"] == 0 and m["examples-processed"] == 64


def test_the_information_term_never_passes_a_model_in_train_mode(e2):
    """The paper's objective reads every group's statistic in eval mode: BatchNorm's running statistics never see
    holdout rows (never trained on) or forget rows (in train mode they would move towards them), whether the holdout
    reference comes from the stopping checks or from the method's own pass; only the retain batch trains."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    train_epochs(model, e2["retain"], 2, 1e-3, 64, seed=0)
    forget, holdout = e2["forget"].subset(np.arange(40)), e2["holdout"].subset(np.arange(37))
    seen: list[tuple[bool, int]] = []
    model[1].register_forward_pre_hook(lambda mod, args: seen.append((mod.training, len(args[0]))))
    m = get_method("marginal")
    for extra in ({}, {"early_stop": False}, {"check_every": 1}):
        seen.clear()
        cfg = m.make_config(epochs=2, reference="holdout", stop_auc=0.0, max_holdout_drop=1.0, max_matched_drop=1.0, **extra)
        out = m.unlearn(model, e2["retain"].subset(np.arange(128)), forget, holdout, cfg)
        assert out.steps == 6
        assert (False, 37) in seen and (False, 16) in seen  # the holdout reference and the forget batches, eval mode
        assert {n for train, n in seen if train} == {64}  # train mode: the retain batches only


def test_with_dropout_a_forget_set_equal_to_the_holdout_has_no_information_to_remove(e2):
    """Î compares the groups as the released model reads them: with dropout, forget rows identical to the holdout
    give a penalty of 0 (a train-mode forget batch against an eval-mode holdout gave 0.04: dropout raised the forget
    losses, so the term looked met early)."""
    from unlearn_fl.methods.base import ForgetBatch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 10))
    train_epochs(model, e2["retain"], 2, 1e-3, 64, seed=0)
    model.train()
    X, y = (torch.as_tensor(a) for a in (e2["holdout"].X[:48], e2["holdout"].y[:48]))
    m = get_method("marginal")
    for statistic in ("loss", "prediction", "joint"):
        cfg = m.make_config(reference="holdout", statistic=statistic)
        term = m.forget_term(model, ForgetBatch(X, y, holdout_x=X, holdout_y=y), cfg)
        assert model.training and abs(float(term)) < 1e-6, (statistic, float(term))


def test_retain_epochs_bound_only_the_sites_without_forget_rows(e2):
    """`retain_epochs`: a retainer (no forget rows: the retain term only) passes retain_epochs × its rows; a
    forget-holder keeps `epochs`, counted in steps of its larger side."""
    from unlearn_fl.engine.client_logic import local_unlearn

    retain, forget, holdout = e2["retain"].subset(np.arange(128)), e2["forget"].subset(np.arange(40)), e2["holdout"]
    empty = forget.subset(np.zeros(0, dtype=np.int64))
    cfg = {"epochs": 5, "retain_epochs": 2, "early_stop": False}
    _, m = local_unlearn(e2["original"], holdout, retain, empty, "marginal", cfg, None, seed=0)
    assert m["steps"] == 2 * 2 and m["examples-processed"] == 2 * 128
    _, m = local_unlearn(e2["original"], holdout, retain, forget, "marginal", cfg, None, seed=0)
    assert m["steps"] == 5 * 3  # max(128/64, ⌈40/16⌉) = 3 steps an epoch
    _, m = local_unlearn(e2["original"], holdout, retain, empty, "marginal", {**cfg, "retain_epochs": None}, None, seed=0)
    assert m["examples-processed"] == 5 * 128
    _, m = local_unlearn(e2["original"], holdout, retain, forget, "finetune", cfg, None, seed=0)
    assert m["examples-processed"] == 5 * 128  # a forget-holder keeps `epochs`, even where the method ignores its rows
    for name in ("scrub", "federaser", "pga", "retrain"):  # their own local steps never read it
        with pytest.raises(ValueError, match=f"{name} runs its own local step: leave retain_epochs unset"):
            get_method(name).make_config(retain_epochs=2)



def test_holdout_reference_settings_are_refused_where_no_holdout_reference_is_read():
    """reference_every / reference_batch only change the paper's objective against the holdout; any other method, or
    the objective against D_r, would ignore them silently."""
    for name in ("retrain", "finetune", "gradient-ascent", "scrub", "federaser", "pga"):
        with pytest.raises(ValueError, match=f"reference_every sets how the holdout's reference statistic is passed, and {name} reads no"):
            get_method(name).make_config(reference_every=5)
    with pytest.raises(ValueError, match="marginal with reference 'retain' reads no holdout reference"):
        get_method("marginal").make_config(reference="retain", reference_batch=16)
    with pytest.raises(ValueError, match="two ways to pass the holdout's reference"):  # the batch would ignore reference_every
        get_method("marginal").make_config(reference_every=5, reference_batch=16)
    for reference in ("holdout", "auto"):
        assert get_method("marginal").make_config(reference=reference, reference_every=5).reference_every == 5
        assert get_method("marginal").make_config(reference=reference, reference_batch=16).reference_batch == 16


def test_a_holdout_batch_keeps_the_whole_holdouts_weight_in_the_information_term(e2):
    """With a batch of the holdout as the reference, Î weighs the holdout group by all its rows, as with the whole
    holdout: γ · I_plugin of the two groups' mean statistics with weights (forget batch rows, holdout rows)."""
    from unlearn_fl.information.plugin import plugin_mi_from_means
    from unlearn_fl.methods.base import ForgetBatch
    from unlearn_fl.methods.statistics import soft_statistic
    from unlearn_fl.models import eval_logits

    m = get_method("marginal")
    cfg = m.make_config(reference="holdout")
    model = e2["original"]
    xf, yf = torch.as_tensor(e2["forget"].X[:16]), torch.as_tensor(e2["forget"].y[:16])
    xh, yh = torch.as_tensor(e2["holdout"].X[:16]), torch.as_tensor(e2["holdout"].y[:16])
    q = torch.stack([soft_statistic(eval_logits(model, x), y, cfg.statistic).mean(0) for x, y in ((xf, yf), (xh, yh))])
    for rows in (None, 16, 400):
        term = m.forget_term(model, ForgetBatch(xf, yf, holdout_x=xh, holdout_y=yh, holdout_rows=rows), cfg)
        expected = cfg.gamma * plugin_mi_from_means(q, torch.tensor([16.0, float(rows or 16)]))
        assert float(term) == pytest.approx(float(expected), rel=1e-6)
    # The weight matters: the same batches read as standing for 400 holdout rows give a different Î.
    small = m.forget_term(model, ForgetBatch(xf, yf, holdout_x=xh, holdout_y=yh, holdout_rows=16), cfg)
    large = m.forget_term(model, ForgetBatch(xf, yf, holdout_x=xh, holdout_y=yh, holdout_rows=400), cfg)
    assert float(small) != pytest.approx(float(large), rel=1e-3)
