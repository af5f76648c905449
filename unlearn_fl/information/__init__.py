"""Information measures: differentiable penalties and independent estimators."""

from unlearn_fl.information.plugin import plugin_mi, plugin_mi_by_label, plugin_mi_from_means

__all__ = ["plugin_mi", "plugin_mi_by_label", "plugin_mi_from_means"]
