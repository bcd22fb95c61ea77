"""`tracing`: W3C Trace Context propagation on every route, the share of new traces sampled, and
the optional OTLP/HTTP export of sampled spans."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..model import TraceExport, Tracing
from ..report import Context, Report, fields, section
from ..validators import int_between, validate_percent, validate_positive_duration, validate_string
from ..yamlsrc import Path

__all__ = ["validate_tracing"]


def validate_tracing(report: Report, path: Path, value: Any, context: Context) -> Tracing | None:
    if value is None:
        return Tracing()
    validators = {"sample": validate_percent, "service_name": validate_string}
    present = section(report, path, value, (*validators, "export"))
    if present is None:
        return None
    values = fields(report, path, present, validators)
    if "export" in present:
        values["export"] = _export(report, (*path, "export"), present["export"])
    return Tracing(**values)


def _export(report: Report, path: Path, value: Any) -> TraceExport | None:
    validators = {
        "endpoint": validate_endpoint,
        "interval": validate_positive_duration,
        "timeout": validate_positive_duration,
        "max_batch": int_between(1, 100_000),
        "max_queue": int_between(1, 10_000_000),
    }
    present = section(report, path, value, validators, required=("endpoint",))
    if present is None:
        return None
    values = fields(report, path, present, validators)
    if "endpoint" not in values:
        return None
    return TraceExport(**values)


def validate_endpoint(value: Any) -> str:
    """An OTLP/HTTP traces URL: `http://` or `https://`, a host, and the path (usually
    `/v1/traces`, which the OTLP specification does not add for you)."""
    text = validate_string(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL such as http://127.0.0.1:4318/v1/traces, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    if not parts.path or parts.path == "/":
        raise ValueError(f"{text!r} has no path: OTLP/HTTP collectors take traces at /v1/traces")
    return text
