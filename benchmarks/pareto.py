"""The Pareto front of forgetting against cost, per benchmark setting (issue: "plots: the Pareto of forgetting
against cost, per setting").

Cost is a method's client compute as a fraction of retraining's in the same run (1 / the compute ratio of
`benchmarks.run.summarise`: rows passed forward and backward plus a third of the rows passed forward only).
Forgetting is measured two ways, each lower-is-better:

- the distance to retraining under the per-example attack: the median over seeds of |RMIA AUC gap| (each seed's
  gap to that seed's retrained runs, so that a seed that over-forgets and one that under-forgets do not cancel;
  0 is retraining's own value);
- the shortfall of the NeurIPS 2023 challenge's score, 1 − score (forgetting quality × utility ratios).

A method is on the front when no other method is at most as costly and at most as far on the measure, and
strictly better on one of the two. Retraining itself sits at cost 1 and |RMIA gap| 0, so on that measure it is
always on the front: the front says what each lower cost buys. Its score is another matter: its forgetting
quality is a noise floor (one half of its runs against the other), so a method can score above it.
"""

from __future__ import annotations

from pathlib import Path

MEASURES = {
    "rmia": ("median |RMIA AUC gap| to retraining", lambda r: r.get("rmia_auc_abs_gap")),
    "1 − score": ("1 − score (forgetting quality × utility)", lambda r: 1.0 - r["score"] if r.get("score") is not None else None),
}


def cost(row: dict) -> float | None:
    """Client compute as a fraction of retraining's (1 / compute ratio); None when the ratio is missing."""
    ratio = row.get("compute_ratio")
    return 1.0 / ratio if ratio else None


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Labels of the non-dominated points, cheapest first.

    points: label -> (cost, loss), both lower-is-better. A point dominates another when it is no worse in both
    coordinates and strictly better in one; equal points dominate neither, so ties stay on the front together.
    """
    front = [a for a, (ca, la) in points.items()
             if not any((cb <= ca and lb <= la) and (cb < ca or lb < la) for b, (cb, lb) in points.items() if b != a)]
    return sorted(front, key=lambda label: points[label])


def fronts(setting: dict) -> dict[str, list[str]]:
    """For one setting of `summarise`'s output: measure name -> the labels on that measure's front."""
    out = {}
    for name, (_, loss) in MEASURES.items():
        pts = {label: (cost(r), loss(r)) for label, r in setting["methods"].items()}
        out[name] = pareto_front({k: v for k, v in pts.items() if v[0] is not None and v[1] is not None})
    return out


def plot(summary: dict, path: Path) -> Path:
    """One row of two panels per setting (median |RMIA gap| and 1 − score against cost, log cost axis), the front drawn
    as a step line and its methods labelled; written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    settings = list(summary)
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 3.6 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        methods = summary[setting]["methods"]
        front = fronts(summary[setting])
        for ax, (name, (label_y, loss)) in zip(row, MEASURES.items()):
            pts = {m: (cost(r), loss(r)) for m, r in methods.items() if cost(r) is not None and loss(r) is not None}
            for m, (c, v) in pts.items():
                on = m in front[name]
                ax.scatter(c, v, s=40 if on else 18, color="C3" if m.startswith("ours") else "C0" if m != "retrain" else "k",
                           zorder=3, alpha=1.0 if on else 0.5)
            for i, m in enumerate(front[name]):  # labels staggered, each with a leader line to its point
                ax.annotate(m.replace("ours: ", "ours, "), pts[m], fontsize=7, xytext=(10, 8 + 11 * (i % 3)),
                            textcoords="offset points", arrowprops=dict(arrowstyle="-", color="0.4", lw=0.6))
            xs = [pts[m][0] for m in front[name]]
            ys = [pts[m][1] for m in front[name]]
            ax.step(xs, ys, where="post", color="0.5", lw=1, zorder=2)
            ax.set_xscale("log")
            ax.set_xlabel("client compute / retraining's (log; 1 / the table's compute ratio)")
            ax.set_ylabel(label_y)
            ax.set_title(f"{setting}: {name}", fontsize=9)
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=t) for c, t in
                        (("C3", "ours"), ("C0", "baselines"), ("k", "retrain"))]
               + [Line2D([], [], color="0.5", label="front (large, named points on it; faded points off it)")],
               loc="upper center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.6 * len(settings))))  # room for the legend: 0.4 in
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
