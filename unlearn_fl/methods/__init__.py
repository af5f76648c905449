"""Data-point unlearning methods: one interface (`Method`), one registry (`METHODS`)."""

from unlearn_fl.methods.base import ForgetBatch, Method, MethodConfig, UnlearnResult
from unlearn_fl.methods.baselines import Finetune, GradientAscent, Retrain
from unlearn_fl.methods.criterion import CriterionResult, marginal_criterion
from unlearn_fl.methods.federaser import FedEraser, FedEraserConfig
from unlearn_fl.methods.marginal import Marginal, MarginalConfig
from unlearn_fl.methods.projected_ascent import ProjectedAscent, ProjectedAscentConfig
from unlearn_fl.methods.scrub import Scrub, ScrubConfig

METHODS: dict[str, Method] = {m.name: m for m in (Marginal(), Retrain(), Finetune(), GradientAscent(), FedEraser(),
                                                  ProjectedAscent(), Scrub())}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}") from None


__all__ = [
    "METHODS", "get_method", "Method", "MethodConfig", "UnlearnResult", "ForgetBatch",
    "Marginal", "MarginalConfig", "Retrain", "Finetune", "GradientAscent",
    "FedEraser", "FedEraserConfig", "ProjectedAscent", "ProjectedAscentConfig", "Scrub", "ScrubConfig",
    "CriterionResult", "marginal_criterion",
]
