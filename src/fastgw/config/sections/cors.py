"""`cors` (per route): which cross-origin browser requests a route accepts; the gateway answers
preflights itself (DESIGN §3: a local responder) and adds the CORS headers to every response."""

from __future__ import annotations

import re
from typing import Any

from ..model import Cors
from ..report import Report, section, sequence, shown
from ..validators import validate_bool, validate_duration, validate_header_name
from ..yamlsrc import Path

__all__ = ["validate_cors"]

_ORIGIN = re.compile(
    r"(https?)://(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?"
)
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")


def validate_origin(value: Any) -> str:
    """`*`, an origin `scheme://host[:port]`, or `scheme://*.domain[:port]` for its subdomains."""
    if value == "*":
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an origin such as https://app.example.com, got {shown(value)}")
    text = value.lower()
    if text.endswith("/") or not _ORIGIN.fullmatch(text):
        raise ValueError(
            f"{value!r} is not an origin: write scheme://host[:port] (no path, no trailing '/'),"
            " or scheme://*.domain for its subdomains"
        )
    return text


def validate_cors_method(value: Any) -> str:
    if not isinstance(value, str) or not _METHOD.fullmatch(value):
        raise ValueError(f"expected an upper-case method such as GET, got {shown(value)}")
    return value


def validate_cors(report: Report, path: Path, value: Any) -> Cors | None:
    present = section(
        report,
        path,
        value,
        ("origins", "methods", "headers", "expose_headers", "credentials", "max_age"),
        required=("origins",),
    )
    if present is None or "origins" not in present:
        return None
    origins = tuple(
        o
        for i, item in enumerate(sequence(report, (*path, "origins"), present["origins"], non_empty=True))
        if (o := report.check((*path, "origins", i), item, validate_origin, None)) is not None
    )
    kwargs: dict[str, Any] = {"origins": origins}
    if "methods" in present:
        kwargs["methods"] = tuple(
            m
            for i, item in enumerate(sequence(report, (*path, "methods"), present["methods"], non_empty=True))
            if (m := report.check((*path, "methods", i), item, validate_cors_method, None)) is not None
        )
    for key in ("headers", "expose_headers"):
        if key in present:
            kwargs[key] = tuple(
                h
                for i, item in enumerate(sequence(report, (*path, key), present[key]))
                if (h := report.check((*path, key, i), item, validate_header_name, None)) is not None
            )
    credentials = report.check((*path, "credentials"), present.get("credentials", False), validate_bool, False)
    kwargs["credentials"] = credentials
    if "max_age" in present:
        kwargs["max_age"] = report.check((*path, "max_age"), present["max_age"], validate_duration, None)
    if credentials and "*" in origins:
        report.error(
            (*path, "origins"),
            "'*' cannot be used with credentials: true (browsers refuse it, Fetch standard §3.2.5);"
            " list the origins that may send credentials",
        )
        return None
    return Cors(**kwargs)
