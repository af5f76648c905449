"""Forgetting reports: the pydantic schema, JSON export and the HTML page."""

from unlearn_fl.report.schema import SCHEMA_VERSION, ForgettingReport, json_schema

__all__ = ["SCHEMA_VERSION", "ForgettingReport", "json_schema"]
