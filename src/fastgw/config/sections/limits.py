"""`limits`: the bounds on what a client may send (head, headers, URL, body) and how slowly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import Limits
from ..report import Context, Report, fields, section
from ..validators import int_between, size_at_least, validate_positive_duration, validate_size
from ..yamlsrc import Path

__all__ = ["validate_limits"]


def validate_limits(report: Report, path: Path, value: Any, context: Context) -> Limits:
    validators: dict[str, Callable[[Any], Any]] = {
        "max_head": size_at_least(1024, "1KiB"),
        "max_headers": int_between(1),
        "max_url": size_at_least(1, "1 byte"),
        "max_body": validate_size,
        "header_timeout": validate_positive_duration,
        "body_timeout": validate_positive_duration,
        "idle_timeout": validate_positive_duration,
        "lingering_time": validate_positive_duration,
        "lingering_timeout": validate_positive_duration,
    }
    present = section(report, path, value, validators)
    return Limits(**fields(report, path, present or {}, validators))
