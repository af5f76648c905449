"""Do the independent estimates of the dependence of Z on S agree? (docs/method.md §3, "Checking").

A projection that removes S should lower every estimate. When an MI estimate rose while every probe's AUC fell
(or fell while every probe's AUC rose), or one probe's AUC fell while another's rose, the estimates disagree and a
report must say so rather than show the numbers side by side: one of them is then measuring something else (the
Gaussian proxy on discrete columns, a linear probe blind to a dependence a flexible one finds, or noise).
"""

from __future__ import annotations

from collections.abc import Mapping


def disagreement(mi: Mapping[str, tuple[float | None, float | None]],
                 probes: Mapping[str, tuple[float | None, float | None]]) -> str | None:
    """One clause per MI estimate that moved against every probe and per pair of probes that moved apart; None if none.

    mi: estimator name -> (before, after) in nats; probes: probe name -> (AUC before, AUC after). Entries with a
    None value are skipped; with no probe left there is nothing to compare and the result is None.
    """
    aucs = {k: v for k, v in probes.items() if v[0] is not None and v[1] is not None}
    if not aucs:
        return None
    all_fell = all(a < b for b, a in aucs.values())
    all_rose = all(a > b for b, a in aucs.values())
    desc = ", ".join(f"{k} {b:.3f} -> {a:.3f}" for k, (b, a) in aucs.items())
    out = []
    for name, (before, after) in mi.items():
        if before is None or after is None:
            continue
        if after > before and all_fell:
            out.append(f"{name} rose {before:.3g} -> {after:.3g} nats while every probe's AUC fell ({desc})")
        elif after < before and all_rose:
            out.append(f"{name} fell {before:.3g} -> {after:.3g} nats while every probe's AUC rose ({desc})")
    names = list(aucs)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            (bp, ap), (bq, aq) = aucs[p], aucs[q]
            if (ap < bp and aq > bq) or (ap > bp and aq < bq):
                down, up = (p, q) if ap < bp else (q, p)
                out.append(f"the {down}'s AUC fell {aucs[down][0]:.3f} -> {aucs[down][1]:.3f} while the {up}'s rose "
                           f"{aucs[up][0]:.3f} -> {aucs[up][1]:.3f}: S is still predictable from the features by the latter")
    return "; ".join(out) if out else None
