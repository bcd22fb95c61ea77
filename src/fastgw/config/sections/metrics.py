"""`metrics`: whether workers record per-request metrics (the admin API's `/metrics`)."""

from __future__ import annotations

from typing import Any

from ..model import Metrics
from ..report import Context, Report, fields, section
from ..validators import validate_bool
from ..yamlsrc import Path

__all__ = ["validate_metrics"]


def validate_metrics(report: Report, path: Path, value: Any, context: Context) -> Metrics:
    validators = {"enabled": validate_bool}
    present = section(report, path, value, validators)
    return Metrics(**fields(report, path, present or {}, validators))
