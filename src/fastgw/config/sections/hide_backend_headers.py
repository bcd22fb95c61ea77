"""`hide_backend_headers`: the upstream response headers that name the backend's software and are
therefore never relayed (the reverse proxy hides the identity of the servers behind it)."""

from __future__ import annotations

from typing import Any

from ..report import Context, Report, sequence
from ..validators import editable_header
from ..yamlsrc import Path

__all__ = ["validate_hide_backend_headers"]


def validate_hide_backend_headers(report: Report, path: Path, value: Any, context: Context) -> tuple[str, ...]:
    """A list of header names (`[]` relays them all); the default is `HIDDEN_BACKEND_HEADERS`."""
    names: list[str] = []
    for index, item in enumerate(sequence(report, path, value)):
        name = report.check((*path, index), item, editable_header("response"), None)
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)
