"""Where a route's requests go besides a single upstream: a weighted split between upstreams
(canaries, A/B, sticky by a request key), a fixed response, a redirect; and the path rewrite on
the way to an upstream. Templates are checked against what the route captures, so a typo fails
at load, not as a 500."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from ..model import Match, Redirect, Respond, Rewrite, WeightedUpstream
from ..report import Report, section, sequence, shown, suggest
from ..validators import editable_header, int_between, validate_header_value, validate_string
from ..yamlsrc import Path, kind_of
from .upstreams import validate_hash_key

__all__ = ["route_params", "validate_redirect", "validate_respond", "validate_rewrite", "validate_split"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
_TEMPLATE = re.compile(r"\{([^{}]*)\}")
MAX_WEIGHT = 1000
MAX_RESPOND_BODY = 64 * 1024
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def route_params(match: Match | None) -> set[str]:
    if match is None or match.path is None:
        return set()
    return {name for name, _ in _PARAM.findall(match.path)}


def validate_split(
    report: Report, path: Path, value: Any, upstream_names: Collection[str]
) -> tuple[WeightedUpstream, ...]:
    """`[{name: v1, weight: 90}, {name: v2, weight: 10}]`: each request goes to one of them in
    proportion to the weights (a weight of 0 sends none, for draining)."""
    out: list[WeightedUpstream] = []
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        item_path = (*path, index)
        present = section(report, item_path, item, ("name", "weight"), required=("name", "weight"))
        if present is None or "name" not in present or "weight" not in present:
            continue
        name = report.check((*item_path, "name"), present["name"], validate_string, None)
        weight = report.check((*item_path, "weight"), present["weight"], int_between(0, MAX_WEIGHT), None)
        if name is not None and name not in upstream_names:
            report.error((*item_path, "name"), f"unknown upstream {name!r}{suggest(name, upstream_names)}")
            continue
        if name is not None and any(w.name == name for w in out):
            report.error((*item_path, "name"), f"upstream {name!r} is listed twice")
            continue
        if name is not None and weight is not None:
            out.append(WeightedUpstream(name, weight))
    if out and sum(w.weight for w in out) == 0:
        report.error(path, "at least one weight must be above 0")
    return tuple(out)


def validate_sticky(value: Any) -> Any:
    return validate_hash_key(value)


def validate_rewrite(report: Report, path: Path, value: Any, match: Match | None) -> Rewrite | None:
    """`{prefix: /new}` replaces the route's prefix; `{path: "/users/{id}"}` is a template of the
    route's path params."""
    present = section(report, path, value, ("prefix", "path"))
    if present is None:
        return None
    if ("prefix" in present) == ("path" in present):
        report.error(path, "needs exactly one of 'prefix' (replaces the route's prefix) or 'path' (a template)")
        return None
    if "prefix" in present:
        text = report.check((*path, "prefix"), present["prefix"], _absolute_path, None)
        if text is None:
            return None
        if match is not None and match.prefix is None:
            report.error((*path, "prefix"), "a prefix rewrite needs match.prefix (this route matches a path)")
            return None
        return Rewrite(prefix=text.rstrip("/") or "/")
    text = report.check((*path, "path"), present["path"], _absolute_path, None)
    if text is None:
        return None
    known = route_params(match)
    for name in _TEMPLATE.findall(text):
        base = name.rstrip("*")
        if base not in known:
            hint = f"; this route captures {', '.join(sorted(known))}" if known else "; this route captures none"
            report.error((*path, "path"), f"{{{name}}} is not a parameter of match.path{hint}")
            return None
    return Rewrite(path=text)


def _absolute_path(value: Any) -> str:
    text = validate_string(value)
    if not text.startswith("/") or "?" in text or "#" in text or " " in text:
        raise ValueError(f"expected a path starting with '/' (no query, fragment or spaces), got {text!r}")
    return text


def validate_respond(report: Report, path: Path, value: Any) -> Respond | None:
    """`{status, body, headers}`: the gateway answers every request of the route itself."""
    present = section(report, path, value, ("status", "body", "headers"), required=("status",))
    if present is None or "status" not in present:
        return None
    status = report.check((*path, "status"), present["status"], int_between(200, 599), None)
    body = report.check((*path, "body"), present.get("body", ""), _respond_body, None)
    headers: list[tuple[str, str]] = []
    if "headers" in present:
        raw = present["headers"]
        if not isinstance(raw, dict):
            report.error((*path, "headers"), f"expected a mapping of header names to values, got {kind_of(raw)}")
        else:
            for raw_name, raw_value in raw.items():
                item_path = (*path, "headers", str(raw_name))
                name = report.check(item_path, raw_name, editable_header("response"), None)
                header_value = report.check(item_path, raw_value, validate_header_value, None)
                if name is not None and header_value is not None:
                    headers.append((name, header_value))
    if status is None or body is None:
        return None
    if body and not any(n == "content-type" for n, _ in headers):
        headers.append(("content-type", "text/plain; charset=utf-8"))
    return Respond(status=status, body=body.encode(), headers=tuple(headers))


def _respond_body(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {shown(value)}")
    if len(value.encode()) > MAX_RESPOND_BODY:
        raise ValueError(f"is longer than {MAX_RESPOND_BODY // 1024} KiB")
    return value


def validate_redirect(report: Report, path: Path, value: Any, match: Match | None) -> Redirect | None:
    """`{to, status}`: `to` may use `{path}`, `{query}` and the route's path params."""
    present = section(report, path, value, ("to", "status"), required=("to",))
    if present is None or "to" not in present:
        return None
    to = report.check((*path, "to"), present["to"], validate_header_value, None)
    status = report.check((*path, "status"), present.get("status", 308), _redirect_status, None)
    if to is None or status is None:
        return None
    known = route_params(match) | {"path", "query"}
    for name in _TEMPLATE.findall(to):
        if name.rstrip("*") not in known:
            report.error((*path, "to"), f"{{{name}}} is not one of {{path}}, {{query}} or a parameter of match.path")
            return None
    if not to:
        report.error((*path, "to"), "must not be empty")
        return None
    return Redirect(to=to, status=status)


def _redirect_status(value: Any) -> int:
    if value not in REDIRECT_STATUSES or isinstance(value, bool):
        raise ValueError(f"expected one of {', '.join(map(str, REDIRECT_STATUSES))}, got {shown(value)}")
    return int(value)
