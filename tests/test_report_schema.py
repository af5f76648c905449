"""The checked-in JSON Schema is the one the pydantic model exports, and the HTML renders every block."""

import json
from pathlib import Path

from unlearn_fl.report.html import render_html
from unlearn_fl.report.schema import (AuditBlock, FeatureBlock, ForgettingReport, ModelBlock, ParetoPoint, RequestBlock,
                                      json_schema)

SCHEMA = Path(__file__).parents[1] / "unlearn_fl" / "report" / "forgetting_report.schema.json"


def test_checked_in_schema_is_current():
    assert json.loads(SCHEMA.read_text()) == json.loads(json.dumps(json_schema())), (
        "regenerate with: python -c \"import json; from unlearn_fl.report.schema import json_schema; "
        "print(json.dumps(json_schema(), indent=2, sort_keys=True))\" > unlearn_fl/report/forgetting_report.schema.json"
    )


def test_digest_ignores_nothing_but_is_stable():
    r = ForgettingReport(request=RequestBlock(request_id="wr-1", kind="data", client_ids=[0], n_forget=3), method="marginal",
                         model=ModelBlock(name="m"), audit=AuditBlock(mia_auc_before=0.6, mia_auc_after=0.5, delta=1e-5, verdict="passed"))
    again = ForgettingReport.model_validate_json(r.to_json())
    assert again.digest() == r.digest()
    again.audit.verdict = "failed"
    assert again.digest() != r.digest()


def test_feature_report_renders_its_pareto_plot_and_escapes_text():
    r = ForgettingReport(request=RequestBlock(request_id="<wr>", kind="feature", n_forget=10), method="barycenter-quantile",
                         model=ModelBlock(name="feature-sex"),
                         feature=FeatureBlock(sensitive="sex", method="quantile", t=1.0, mi_before=0.2, mi_after=0.01,
                                              s_auc_before=0.8, s_auc_after=0.51, utility_before=0.7, utility_after=0.69,
                                              pareto=[ParetoPoint(t=0, s_auc=0.8, utility=0.7), ParetoPoint(t=1, s_auc=0.51, utility=0.69)]))
    html = render_html(r)
    assert "id='plot-pareto'" in html and "&lt;wr&gt;" in html and "<wr>" not in html


def test_feature_report_shows_the_mi_estimator_and_flags_a_disagreement():
    f = FeatureBlock(sensitive="afam", method="quantile", t=1.0, mi_before=0.161, mi_after=3.264, s_auc_before=0.731,
                     s_auc_after=0.537, utility_before=0.7, utility_after=0.69, mi_estimator="k-NN MI <test>",
                     mi_chance=0.004, s_auc_gbm_before=0.70, s_auc_gbm_after=0.52, estimates_agree=False,
                     disagreement="k-NN MI rose 0.161 -> 3.26 nats while every probe's AUC fell")
    r = ForgettingReport(request=RequestBlock(request_id="f", kind="feature", n_forget=10), method="barycenter-quantile",
                         model=ModelBlock(name="feature-afam"), feature=f)
    html = render_html(r)
    assert "id='feature-disagreement'" in html and "k-NN MI rose 0.161 -&gt; 3.26 nats" in html
    assert "k-NN MI &lt;test&gt;" in html and "gradient-boosting S-probe AUC" in html
    agreeing = ForgettingReport.model_validate_json(r.to_json())
    agreeing.feature.disagreement, agreeing.feature.estimates_agree = None, True
    assert "feature-disagreement" not in render_html(agreeing)
