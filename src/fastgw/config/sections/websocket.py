"""`websocket` (per route): forward WebSocket upgrades, then tunnel the connection."""

from __future__ import annotations

from typing import Any

from ..model import WebSocket
from ..report import Report, section
from ..validators import validate_positive_duration
from ..yamlsrc import Path, kind_of

__all__ = ["validate_websocket"]


def validate_websocket(report: Report, path: Path, value: Any) -> WebSocket | None:
    """`true`, or `{idle_timeout: DURATION}`; `false` is the same as leaving it out."""
    if value is True:
        return WebSocket()
    if value is False:
        return None
    if not isinstance(value, dict):
        report.error(path, f"expected true or a mapping such as {{idle_timeout: 5m}}, got {kind_of(value)}")
        return None
    present = section(report, path, value, ("idle_timeout",))
    if present is None:
        return None
    idle = None
    if "idle_timeout" in present:
        idle = report.check((*path, "idle_timeout"), present["idle_timeout"], validate_positive_duration, None)
    return WebSocket(idle_timeout=idle)
