"""`websocket` (per route): forward WebSocket upgrades, then tunnel the connection; or, with
`bridge`, terminate WebSocket at the gateway and turn messages into HTTP calls (`fastgw.bridge`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..model import Bridge, WebSocket
from ..report import Report, section, suggest
from ..validators import (
    editable_header,
    int_between,
    one_of,
    size_at_least,
    validate_positive_duration,
    validate_string,
)
from ..yamlsrc import Path, kind_of

__all__ = ["BRIDGE_KEYS", "MAX_BRIDGE_MESSAGE", "validate_websocket"]

BRIDGE_KEYS = (
    "upstream", "path", "connect_path", "disconnect_path", "route_key", "max_message", "max_in_flight",
    "max_queued", "timeout", "on_error", "forward_headers",
)
MAX_BRIDGE_MESSAGE = 16 * 1024 * 1024
"""The largest `max_message`: a message is held whole (it becomes one POST body)."""
GATEWAY_HEADERS = ("x-connection-id", "x-route-key", "content-type")
"""Headers every call carries, set by the gateway (lower case)."""
_PATH_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
"""What a call's target may contain: visible ASCII (the internal client refuses anything else)."""


def validate_websocket(
    report: Report, path: Path, value: Any, upstream_names: Collection[str] = ()
) -> WebSocket | None:
    """`true`, or `{idle_timeout: DURATION, bridge: {...}}`; `false` is the same as leaving it out."""
    if value is True:
        return WebSocket()
    if value is False:
        return None
    if not isinstance(value, dict):
        report.error(path, f"expected true or a mapping such as {{idle_timeout: 5m}}, got {kind_of(value)}")
        return None
    present = section(report, path, value, ("idle_timeout", "bridge"))
    if present is None:
        return None
    idle = None
    if "idle_timeout" in present:
        idle = report.check((*path, "idle_timeout"), present["idle_timeout"], validate_positive_duration, None)
    bridge = None
    if "bridge" in present:
        bridge = validate_bridge(report, (*path, "bridge"), present["bridge"], upstream_names)
        if bridge is None:
            return None
    return WebSocket(idle_timeout=idle, bridge=bridge)


def validate_call_path(value: Any) -> str:
    """The path (and query) of a call: `/` then visible ASCII, no spaces or fragment."""
    text = validate_string(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/', got {text!r}")
    bad = sorted(set(text) - _PATH_CHARS)
    if bad:
        raise ValueError(f"may contain only visible ASCII (percent-encode the rest), found {bad[0]!r}")
    if "#" in text:
        raise ValueError("a fragment ('#') is never sent to a server")
    return text


def validate_route_key(value: Any) -> str:
    """A dotted field name of the message's JSON (`action`, `meta.type`)."""
    text = validate_string(value)
    if any(not part or part != part.strip() for part in text.split(".")):
        raise ValueError(f"expected a field name, dotted for a nested one (as action or meta.type), got {text!r}")
    return text


def validate_bridge(report: Report, path: Path, value: Any, upstream_names: Collection[str]) -> Bridge | None:
    present = section(report, path, value, BRIDGE_KEYS, required=("upstream", "path"))
    if present is None or "upstream" not in present or "path" not in present:
        return None
    upstream = report.check((*path, "upstream"), present["upstream"], validate_string, None)
    if upstream is not None and upstream_names and upstream not in upstream_names:
        known = "" if suggest(upstream, upstream_names) else f"; defined: {', '.join(sorted(upstream_names))}"
        report.error((*path, "upstream"), f"unknown upstream {upstream!r}{suggest(upstream, upstream_names)}{known}")
        upstream = None
    ok = upstream is not None
    paths: dict[str, str | None] = {}
    for key in ("path", "connect_path", "disconnect_path"):
        if key in present:
            paths[key] = report.check((*path, key), present[key], validate_call_path, None)
            ok = ok and paths[key] is not None
    kwargs: dict[str, Any] = {}
    checks = {
        "route_key": validate_route_key,
        "max_message": _max_message,
        "max_in_flight": int_between(1, 1024),
        "max_queued": int_between(1, 65536),
        "timeout": validate_positive_duration,
        "on_error": one_of("message", "close"),
    }
    for key, check in checks.items():
        if key in present:
            result = report.check((*path, key), present[key], check, None)
            if result is None:
                ok = False
            else:
                kwargs[key] = result
    if "forward_headers" in present:
        headers = _forward_headers(report, (*path, "forward_headers"), present["forward_headers"])
        if headers is None:
            ok = False
        else:
            kwargs["forward_headers"] = headers
    if not ok:
        return None
    assert upstream is not None
    return Bridge(upstream=upstream, path=paths["path"] or "/", connect_path=paths.get("connect_path"),
                  disconnect_path=paths.get("disconnect_path"), **kwargs)


def _max_message(value: Any) -> int:
    size = size_at_least(1, "1B")(value)
    if size > MAX_BRIDGE_MESSAGE:
        raise ValueError(f"must be at most 16MiB (a message is held whole), got {value!r}")
    return size


def _forward_headers(report: Report, path: Path, value: Any) -> tuple[str, ...] | None:
    """Handshake headers sent along with every call: names a route may set (the gateway's own,
    such as Host, X-Forwarded-For or X-Request-ID, are set by the gateway)."""
    if not isinstance(value, list):
        report.error(path, f"expected a list of header names, got {kind_of(value)}")
        return None
    check = editable_header("request")
    names: list[str] = []
    ok = True
    for index, item in enumerate(value):
        name = report.check((*path, index), item, check, None)
        if name is None:
            ok = False
        elif name.lower() in GATEWAY_HEADERS:
            report.error((*path, index), f"{name!r} is set by the gateway on every call")
            ok = False
        elif name.lower() in names:
            report.error((*path, index), f"{name!r} is listed twice")
            ok = False
        else:
            names.append(name.lower())
    return tuple(names) if ok else None
