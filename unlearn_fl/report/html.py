"""Render a ForgettingReport as one self-contained HTML page (plots embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io

from unlearn_fl.report.schema import ForgettingReport

_COLORS = {"before": "#d62728", "after": "#1f77b4", "retrain": "#2ca02c", "holdout": "#7f7f7f"}
_VERDICT_COLORS = {"passed": "#1a7f37", "failed": "#cf222e", "inconclusive": "#9a6700"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fig(w: float = 5.2, h: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


_SMOOTHING_TEXT = {
    "histogram": "histogram (equal-mass histograms of each group's values)",
    "kernel": "kernel-smoothed (a Gaussian kernel on each group's sample; smooth quantile functions)",
    "relative": "relative (histograms on the pooled law's levels, mapped back through its quantile function; for "
                "columns of values on a grid)",
    "auto": "auto (per column, whichever of histogram, relative and kernel left the groups' held-out ranks most "
            "uniform on splits of the fitted rows)",
}


_SUMMARY_TEXT = {
    "sketch": "a quantile sketch per group and column (201 levels): maps close to the central ones",
    "marginals": "every column's values with their counts per group (marginals, unlinked across columns): maps equal "
                 "to a central fit on the sites' pooled rows",
}


def _smoothing(r: ForgettingReport) -> str | None:
    """How a quantile projection of the input columns estimated each group's law (docs/method.md §3, "Smoothing" and
    "Values on a grid"), with auto's choices counted when the report records them."""
    f = r.feature
    if f is None or f.method != "quantile" or f.lam is not None or f.outcome not in (None, "features"):
        return None
    setting = str(r.method_config.get("smoothing", "histogram"))
    text = _SMOOTHING_TEXT.get(setting, setting)
    used = r.method_config.get("smoothing_used")
    if setting == "auto" and isinstance(used, dict) and used:
        counts = {k: list(used.values()).count(k) for k in ("histogram", "relative", "kernel")}
        text += ": " + ", ".join(f"{k} on {n} column{'s' if n != 1 else ''}" for k, n in counts.items() if n)
    return text


def _ceiling(r: ForgettingReport) -> str | None:
    """The demographic-parity ceiling row (unlearn_fl.feature.parity_ceiling), or its reason for being absent."""
    pc = r.method_config.get("parity_ceiling")
    if not isinstance(pc, dict):
        return None
    if "ceiling" not in pc:
        return str(pc.get("note"))
    gap = 100 * (pc["accuracy_with_s"] - pc["ceiling"])
    cost = f"{gap:.1f} points, what any S-free model gives up" if gap > 0 else "no measurable cost of independence"
    return f"{pc['accuracy_with_s']:.4g} with S / {pc['ceiling']:.4g} independent of S ({cost}; {pc.get('probe')} probe)"


def _feature_setting_rows(r: ForgettingReport) -> list[tuple[str, str]]:
    """The rows that apply to this feature report: the quantile maps' group laws, the release's task heads."""
    mc = r.method_config

    def before_after(key: str) -> str | None:
        v = mc.get(key)
        return f"{v.get('before', float('nan')):.4g} / {v.get('after', float('nan')):.4g}" if isinstance(v, dict) else None

    rows = [("group laws of the quantile maps", _smoothing(r)), ("task heads", mc.get("head")),
            ("task heads' accuracy before / after (the released model, pooled site holdouts)", before_after("head_accuracy")),
            ("S-probe AUC on the released model's scores before / after", before_after("scores_s_auc")),
            ("gradient-boosting S-probe AUC on the released model's scores before / after", before_after("scores_s_auc_gbm")),
            ("best task accuracy with S / independent of S (demographic-parity ceiling, held-out rows)", _ceiling(r)),
            ("what each site sent for the quantile maps", _SUMMARY_TEXT.get(str(mc.get("summary", "sketch")))
             if _smoothing(r) is not None and r.method.endswith("-federated") else None)]
    return [(k, v) for k, v in rows if v is not None]


def _utility_label(r: ForgettingReport) -> str:
    """The task-accuracy row's label, naming what was trained on the (projected) data to measure it."""
    how = r.method_config.get("utility")
    return f"task accuracy before / after ({how})" if isinstance(how, str) and how else "task accuracy before / after"


def _plots(r: ForgettingReport) -> list[tuple[str, str, str]]:
    """(id, title, data URI) of every plot the report's content supports."""
    out = []
    a = r.audit
    if a is not None:
        models = [(k, getattr(a, k)) for k in ("before", "after", "retrain") if getattr(a, k) is not None]
        if any(m.loss_histogram for _, m in models):
            fig, ax = _fig()
            for name, m in models:
                h = m.loss_histogram
                if not h:
                    continue
                edges = h["edges"]
                ax.step(edges[1:], h["forget"], where="pre", color=_COLORS[name], label=f"forget set, {name}")
            h0 = next(m.loss_histogram for _, m in models if m.loss_histogram)
            ax.step(h0["edges"][1:], h0["holdout"], where="pre", color=_COLORS["holdout"], ls="--", label="never seen (before)")
            ax.set_xlim(h0["edges"][1], h0["edges"][-1])
            ax.set_xscale("log")
            ax.set_xlabel("per-example cross-entropy")
            ax.set_ylabel("share of examples")
            ax.legend(fontsize=8)
            ax.set_title("Loss on the forget set vs never-seen data")
            out.append(("plot-losses", "Loss distributions", _png(fig)))
        if any(m.attacks and m.attacks[0].roc for _, m in models):
            fig, ax = _fig(4.2, 4.0)
            for name, m in models:
                if m.attacks and m.attacks[0].roc:
                    roc = m.attacks[0].roc
                    ax.plot(roc.fpr, roc.tpr, color=_COLORS[name], label=f"{name} (AUC {m.attacks[0].auc:.3f})")
            ax.plot([0, 1], [0, 1], color="#999", ls=":", lw=1)
            if r.accounting is not None and r.accounting.epsilon is not None:  # no attack on an (ε, δ)-DP model beats TPR ≤ e^ε·FPR + δ
                import numpy as np

                xs = np.linspace(0, 1, 201)
                ax.plot(xs, np.minimum(1.0, np.exp(r.accounting.epsilon) * xs + r.accounting.delta), color="#000", ls="--",
                        lw=1, label=f"DP bound, accountant ε={r.accounting.epsilon:.2f}")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title("Membership inference ROC (forget set)")
            ax.legend(fontsize=8, loc="lower right")
            out.append(("plot-roc", "Membership-inference ROC", _png(fig)))
        scored = [(name, m) for name, m in models if m.score_histogram]
        if scored:
            fig, ax = _fig()
            for name, m in scored:
                h = m.score_histogram
                ax.step(h["edges"][1:], h["forget"], where="pre", color=_COLORS[name], label=f"forget set, {name}")
            h0 = scored[0][1].score_histogram
            ax.step(h0["edges"][1:], h0["holdout"], where="pre", color=_COLORS["holdout"], ls="--", label=f"never seen ({scored[0][0]})")
            ax.set_xlabel("per-example RMIA score (share of population rows it dominates)")
            ax.set_ylabel("share of examples")
            ax.set_title("Per-example attack scores, against the retrained reference")
            ax.legend(fontsize=8)
            out.append(("plot-scores", "Per-example score distributions", _png(fig)))
    u = r.utility
    if u is not None:
        fig, ax = _fig()
        groups = ["test", "retain", "forget"]
        vals = {
            "before": [u.test_acc_before, u.retain_acc_before, u.forget_acc_before],
            "after": [u.test_acc_after, u.retain_acc_after, u.forget_acc_after],
            "retrain": [u.test_acc_retrain, u.retain_acc_retrain, u.forget_acc_retrain],
        }
        width = 0.26
        for i, (name, v) in enumerate(vals.items()):
            xs = [g + (i - 1) * width for g in range(3)]
            ax.bar(xs, [x if x is not None else 0 for x in v], width, color=_COLORS[name], label=name)
        ax.set_xticks(range(3), groups)
        shown = [x for v in vals.values() for x in v if x is not None]
        ax.set_ylim(max(0.0, min(shown) - 0.05), min(1.0, max(shown) + 0.02))
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
        ax.set_title("Accuracy before / after / retrained")
        out.append(("plot-accuracy", "Accuracy", _png(fig)))
    if r.rounds:
        fig, ax = _fig()
        trained = max((x.round for x in r.rounds if x.phase == "train"), default=0)
        for phase, color in (("train", _COLORS["before"]), ("unlearn", _COLORS["after"]), ("retrain", _COLORS["retrain"])):
            offset = trained if phase == "unlearn" else 0  # unlearning rounds come after the training rounds
            pts = [(x.round + offset, x.test_acc) for x in r.rounds if x.phase == phase and x.test_acc is not None]
            if phase == "unlearn" and pts:
                last = [(x.round, x.test_acc) for x in r.rounds if x.phase == "train" and x.round == trained]
                pts = last + pts
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color, label=phase)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
        ax.set_title("Federated rounds")
        out.append(("plot-rounds", "Rounds", _png(fig)))
    f = r.feature
    if f is not None and f.pareto:
        fig, ax = _fig()
        xs = [p.s_auc for p in f.pareto]
        ys = [p.utility for p in f.pareto]
        ax.plot(xs, ys, marker="o", color=_COLORS["after"])
        for p in f.pareto:
            ax.annotate(f"t={p.t:g}" if p.lam is None else f"λ={p.lam:g}", (p.s_auc, p.utility), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.axvline(0.5, color="#999", ls=":")
        ax.set_xlabel(f"AUC of a probe predicting {f.sensitive} (0.5 = forgotten)")
        ax.set_ylabel("task accuracy")
        ax.set_title("Utility / forgetting Pareto curve")
        out.append(("plot-pareto", "Pareto curve", _png(fig)))
    return out


def _fmt(v) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(title: str, rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<section><h2>{html.escape(title)}</h2><table>{body}</table></section>"


def render_html(r: ForgettingReport) -> str:
    verdict = r.audit.verdict if r.audit else ("feature" if r.feature else "n/a")
    color = _VERDICT_COLORS.get(verdict, "#57606a")
    reasons = "".join(f"<li>{html.escape(x)}</li>" for x in (r.audit.reasons if r.audit else []))
    by = {"audit": "by the empirical audit, which had power", "accounting": "certified by privacy accounting"}
    if r.audit and r.audit.verdict == "passed" and r.audit.decided_by in by:
        reasons = f"<li class='by'>{by[r.audit.decided_by]}</li>" + reasons
    parts = [
        f"<header><h1>Forgetting report</h1><p class='sub'>request <code>{html.escape(r.request.request_id)}</code> · "
        f"{r.request.kind} unlearning · method <code>{html.escape(r.method)}</code> · model {html.escape(r.model.name)} "
        f"v{_fmt(r.model.version)} (parent v{_fmt(r.model.parent_version)}) · {html.escape(r.created_at)}</p>",
        f"<div id='verdict' class='verdict' style='border-color:{color}'><span style='background:{color}'>"
        f"{html.escape(verdict.upper())}</span><ul>{reasons}</ul></div></header>",
    ]
    q = r.request
    parts.append(_table("Request", [("request id", q.request_id), ("kind", q.kind), ("clients", ", ".join(map(str, q.client_ids)) or None),
                                    ("rows the attribute was removed from" if r.feature else "forgotten examples", q.n_forget), ("fraction", q.forget_fraction), ("reason", q.reason)]))
    if r.utility:
        u = r.utility
        parts.append(_table("Utility", [("test accuracy before / after / retrain", f"{_fmt(u.test_acc_before)} / {_fmt(u.test_acc_after)} / {_fmt(u.test_acc_retrain)}"),
                                        ("retain accuracy before / after / retrain", f"{_fmt(u.retain_acc_before)} / {_fmt(u.retain_acc_after)} / {_fmt(u.retain_acc_retrain)}"),
                                        ("forget accuracy before / after / retrain", f"{_fmt(u.forget_acc_before)} / {_fmt(u.forget_acc_after)} / {_fmt(u.forget_acc_retrain)}")]))
    if r.audit:
        a = r.audit
        parts.append(_table("Audit", [("MIA AUC before / after / retrain", f"{_fmt(a.mia_auc_before)} / {_fmt(a.mia_auc_after)} / {_fmt(a.mia_auc_retrain)}"),
                                      (f"empirical ε lower bound (δ={a.delta:g}, {_fmt(a.confidence)} conf.) before / after / retrain",
                                       f"{_fmt(a.epsilon_lower_before)} / {_fmt(a.epsilon_lower)} / {_fmt(a.epsilon_lower_retrain)}"),
                                      ("TPR at FPR (after)", ", ".join(f"{k}: {v:.3f}" for k, v in a.tpr_at_fpr.items()) or None),
                                      ("criterion Î(Z;V) nats before / after / retrain", f"{_fmt(a.criterion_mi_before)} / {_fmt(a.criterion_mi_after)} / {_fmt(a.criterion_mi_retrain)}"),
                                      ("forget-loss KS distance to retrain", a.forget_loss_distance_to_retrain),
                                      ("ε of the released model: audited lower bound / accountant",
                                       f"{_fmt(a.epsilon_interval[0])} / {_fmt(a.epsilon_interval[1])}" if a.epsilon_interval else None),
                                      ("weights unchanged from the parent", a.unchanged)]))
        attacks = [x.attack for x in (a.after.attacks if a.after else [])]
        if attacks:
            pick = lambda m, n: next((x for x in (m.attacks if m else []) if x.attack == n), None)
            rows = []
            for n in attacks:
                b, f, t = pick(a.before, n), pick(a.after, n), pick(a.retrain, n)
                num = lambda v: "—" if v is None else f"{v:.4g}"  # plain text: the table cell escapes it
                rows.append((f"{n}: AUC before / after / retrain", " / ".join(num(x.auc if x else None) for x in (b, f, t))))
                rows.append((f"{n}: TPR at FPR, before → after", "; ".join(
                    f"{k}: {num(b.tpr_at_fpr.get(k) if b else None)} → {num(v)}" for k, v in f.tpr_at_fpr.items())))
            parts.append(_table("Attacks", rows))
        if a.power:
            head = "<tr><th>attack</th><th>reference</th><th>AUC before</th><th>reference AUC</th><th>observed gap</th><th>resolution ±</th><th>allowed gap</th><th>power</th></tr>"
            body = "".join(f"<tr><td>{html.escape(p.attack)}</td><td>{p.reference}</td><td>{_fmt(p.auc_before)}</td><td>{_fmt(p.auc_reference)}</td>"
                           f"<td>{_fmt(p.observed_gap)}</td><td>{_fmt(p.resolution)}</td><td>{_fmt(p.allowed_gap)}</td>"
                           f"<td>{'yes' if p.has_power else 'no'}</td></tr>" for p in a.power)
            parts.append(f"<section id='power'><h2>Audit power</h2><p class='sub'>Could the attack tell the model before unlearning "
                         f"from the reference? Only then can it show forgetting.</p><table class='grid'>{head}{body}</table></section>")
        if a.retained_exposure:
            head = "<tr><th>retained site</th><th>AUC before</th><th>AUC after</th><th>members / non-members</th><th>resolution ±</th><th>increased</th></tr>"
            body = "".join(f"<tr><td>{e.client}</td><td>{_fmt(e.auc_before)}</td><td>{_fmt(e.auc_after)}</td><td>{e.n_members} / {e.n_nonmembers}</td>"
                           f"<td>{_fmt(e.resolution)}</td><td>{'YES' if e.increased else 'no'}</td></tr>" for e in a.retained_exposure)
            parts.append(f"<section id='exposure'><h2>Retained sites' exposure</h2><p class='sub'>Each retained site's own rows against its "
                         f"holdout (loss-threshold attack), before and after unlearning.</p><table class='grid'>{head}{body}</table></section>")
    if r.accounting:
        c = r.accounting
        eps = c.epsilon if c.epsilon is not None else f"unbounded ({c.epsilon_status}): no differential-privacy guarantee"
        parts.append(_table("Privacy accounting", [("accountant", c.accountant + (f" (fallback from {c.requested_accountant})"
                                                                                  if c.requested_accountant else "")),
                                                   ("unit", c.unit), ("ε", eps), ("δ", c.delta), ("noise multiplier", c.noise_multiplier),
                                                   ("sample rate", c.sample_rate), ("steps", c.steps), ("max grad norm", c.max_grad_norm),
                                                   ("note", c.epsilon_note)]))
    if r.cost:
        c = r.cost
        parts.append(_table("Cost", [("unlearning seconds", c.unlearn_seconds), ("retraining seconds", c.retrain_seconds),
                                     ("speed-up (retrain / unlearn)", c.speedup), ("unlearning rounds", c.unlearn_rounds), ("retrain rounds", c.retrain_rounds),
                                     ("forget-set monitoring seconds (not in unlearning seconds)", c.monitor_seconds),
                                     ("model bytes sent, unlearning / retraining",
                                      f"{c.unlearn_bytes} / {c.retrain_bytes}" if c.unlearn_bytes is not None else None),
                                     ("RMIA references trained at the withdrawing site(s) (count, mode, examples, seconds)",
                                      ", ".join(str(round(v, 3) if isinstance(v, float) else v) for v in rc.values()) if (rc := (
                                          r.audit.after.reference_cost if r.audit and r.audit.after else None)) else None)]))
    if r.feature:
        f = r.feature
        if f.disagreement:
            parts.append("<div class='verdict' id='feature-disagreement' style='border-color:#9a6700'><span style='background:#9a6700'>"
                         "estimates disagree</span><p>" + html.escape(f.disagreement) + "</p></div>")
        parts.append(_table("Feature unlearning", [("sensitive attribute", f.sensitive), ("method", f.method),
                                                   ("removed from", {"embedding": "the model's last hidden layer",
                                                                     "scores": "the model's outputs"}.get(f.outcome or "",
                                                                                                         "the input features")),
                                                   ("λ (in training)", f.lam) if f.lam is not None else ("t", f.t),
                                                   *_feature_setting_rows(r),
                                                   (f"MI before / after (nats){'' if f.mi_estimator else ', Gaussian'}",
                                                    f"{_fmt(f.mi_before)} / {_fmt(f.mi_after)}"),
                                                   ("MI estimator", f.mi_estimator),
                                                   ("MI chance level (S permuted, nats)", f.mi_chance),
                                                   ("Gaussian MI proxy before / after (nats)",
                                                    f"{_fmt(f.mi_gaussian_before)} / {_fmt(f.mi_gaussian_after)}"
                                                    if f.mi_gaussian_before is not None else None),
                                                   ("S-probe AUC before / after", f"{_fmt(f.s_auc_before)} / {_fmt(f.s_auc_after)}"),
                                                   ("S-probe chance level (S permuted, 95% point)", f.s_auc_chance),
                                                   ("gradient-boosting S-probe AUC before / after",
                                                    f"{_fmt(f.s_auc_gbm_before)} / {_fmt(f.s_auc_gbm_after)}"
                                                    if f.s_auc_gbm_before is not None else None),
                                                   ("estimates agree", f.estimates_agree),
                                                   (_utility_label(r), f"{_fmt(f.utility_before)} / {_fmt(f.utility_after)}")]))
    plots = _plots(r)
    if plots:
        parts.append("<section><h2>Plots</h2><div class='plots'>" + "".join(
            f"<figure id='{pid}'><img alt='{html.escape(t)}' src='{uri}'><figcaption>{html.escape(t)}</figcaption></figure>" for pid, t, uri in plots
        ) + "</div></section>")
    css = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}"
           "h1{margin-bottom:.2em}.sub{color:#57606a;margin-top:0}table{border-collapse:collapse;width:100%}"
           "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d0d7de}th{width:45%;font-weight:500;color:#57606a}"
           ".grid th{width:auto}li.by{font-weight:600}"
           ".verdict{border:2px solid;border-radius:6px;padding:.6em 1em;margin:1em 0}.verdict span{color:#fff;font-weight:700;padding:2px 10px;border-radius:4px}"
           ".plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figure img{max-width:520px}figcaption{color:#57606a;font-size:.9em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Forgetting report {html.escape(r.request.request_id)}</title>"
            f"<style>{css}</style></head><body>{''.join(parts)}</body></html>")
