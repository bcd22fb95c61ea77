"""`access_log`: where the access log goes (stdout, stderr, a file or off) and its format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import AccessLog
from ..report import Context, Report, fields, section
from ..validators import file_path, one_of
from ..yamlsrc import Path

__all__ = ["validate_access_log"]


def validate_access_log(report: Report, path: Path, value: Any, context: Context) -> AccessLog:
    present = section(report, path, value, ("path", "format"))
    if present is None:
        return AccessLog()
    validators = {"path": _log_path(context.base_dir), "format": one_of("json", "combined")}
    return AccessLog(**fields(report, path, present, validators))


def _log_path(base_dir: str) -> Callable[[Any], str | None]:
    resolve = file_path(base_dir)

    def validate_log_path(value: Any) -> str | None:
        # YAML 1.1 reads a bare `off` as false; both mean "no access log".
        if value is False or value == "off":
            return None
        if value in ("stdout", "stderr"):
            return str(value)
        return resolve(value)

    return validate_log_path
