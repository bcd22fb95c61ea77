"""`routes`: what each request is matched on (path or prefix, methods, host), where it goes, and
the header edits and rate limits on the way. A pattern that request normalization (DESIGN §8)
makes impossible to match is refused here, so that it fails at load time instead of answering 404."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from typing import Any

from ..model import Condition, HeaderOps, Match, Route, RouteHeaders
from ..report import Context, Report, fields, section, sequence, shown, suggest
from ..validators import (
    TOKEN,
    editable_header,
    is_dns_name,
    is_ipv4,
    validate_bool,
    validate_header_name,
    validate_header_value,
    validate_string,
)
from ..yamlsrc import Path, format_path, kind_of
from .access import validate_access
from .aggregate import check_aggregate_claims, validate_aggregate
from .auth import validate_route_auth
from .cache import validate_route_cache
from .compress import validate_compress
from .cors import validate_cors
from .rate_limits import validate_route_rate_limit
from .route_targets import validate_redirect, validate_respond, validate_rewrite, validate_split, validate_sticky
from .websocket import validate_websocket

__all__ = ["validate_routes"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
# Visible ASCII that a normalized request path may contain as is; '%' is checked separately, and
# '{' '}' only ever delimit parameters.
_PATH_CHARS = frozenset(chr(code) for code in range(0x21, 0x7F)) - frozenset("%#?\\{}")
# The router's limit on segments per pattern (`_MAX_SEGMENTS` in _core_src/trie.pxd).
MAX_SEGMENTS = 64
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def validate_routes(report: Report, path: Path, value: Any, context: Context) -> tuple[Route, ...]:
    upstream_names, limit_names = context.names("upstreams"), context.names("rate_limits")
    routes: list[Route] = []
    for index, item in enumerate(sequence(report, path, value)):
        route = validate_route(report, (*path, index), index, item, upstream_names, limit_names)
        route = validate_route_auth(report, (*path, index), item, route, context)
        route = check_aggregate_claims(report, (*path, index), route, context)
        route = validate_route_cache(report, (*path, index), item, route, context)
        if route is not None:
            routes.append(route)
    _report_duplicate_routes(report, path, routes)
    return tuple(routes)


ROUTE_KEYS = (
    "match",
    "upstream",
    "upstreams",
    "sticky",
    "respond",
    "redirect",
    "strip_prefix",
    "rewrite",
    "headers",
    "rate_limit",
    "access",
    "cors",
    "auth",
    "require",
    "aggregate",
    "compress",
    "cache",
    "websocket",
)
# Where a route's requests go: exactly one of these.
TARGET_KEYS = ("upstream", "upstreams", "respond", "redirect", "aggregate")


def validate_route(
    report: Report,
    path: Path,
    index: int,
    value: Any,
    upstream_names: Collection[str],
    limit_names: Collection[str],
) -> Route | None:
    present = section(report, path, value, ROUTE_KEYS, required=("match",))
    if present is None:
        return None
    targets = [key for key in TARGET_KEYS if key in value]
    choices = ", ".join(TARGET_KEYS)
    # A WebSocket bridge answers its route's requests itself (fastgw.bridge): it is the target.
    bridged = isinstance(value, dict) and isinstance(value.get("websocket"), dict) and "bridge" in value["websocket"]
    if bridged:
        if targets:
            report.error((*path, targets[0]), f"a route with websocket.bridge answers at the gateway: remove "
                         f"{' and '.join(targets)} (the bridge names its own upstream)", at_key=True)
        targets = ["websocket"]
    if not targets:
        report.error(path, f"needs one of {choices}: where its requests go")
    elif len(targets) > 1:
        report.error(path, f"needs exactly one of {choices}, found {' and '.join(targets)}")
    match = validate_match(report, (*path, "match"), present["match"]) if "match" in present else None
    upstream = None
    if "upstream" in present:
        upstream = report.check((*path, "upstream"), present["upstream"], validate_string, None)
        if upstream is not None and upstream not in upstream_names:
            suggestion = suggest(upstream, upstream_names)
            known = f"; defined: {', '.join(sorted(upstream_names))}" if upstream_names and not suggestion else ""
            report.error((*path, "upstream"), f"unknown upstream {upstream!r}{suggestion}{known}")
            upstream = None
    split = (
        validate_split(report, (*path, "upstreams"), present["upstreams"], upstream_names)
        if "upstreams" in present
        else ()
    )
    sticky = None
    if "sticky" in present:
        sticky = report.check((*path, "sticky"), present["sticky"], validate_sticky, None)
        if "upstreams" not in present:
            report.error((*path, "sticky"), "sticky needs upstreams (a weighted split) to choose between")
    respond = validate_respond(report, (*path, "respond"), present["respond"]) if "respond" in present else None
    redirect = (
        validate_redirect(report, (*path, "redirect"), present["redirect"], match) if "redirect" in present else None
    )
    strip_prefix = report.check((*path, "strip_prefix"), present.get("strip_prefix", False), validate_bool, False)
    if strip_prefix and match is not None and match.prefix is None:
        report.error((*path, "strip_prefix"), "strip_prefix: true needs match.prefix (this route matches a path)")
    rewrite = validate_rewrite(report, (*path, "rewrite"), present["rewrite"], match) if "rewrite" in present else None
    if rewrite is not None and strip_prefix:
        report.error((*path, "rewrite"), "use either strip_prefix or rewrite, not both (rewrite: {prefix: /} strips)")
    headers = validate_route_headers(report, (*path, "headers"), present["headers"]) if "headers" in present else None
    rate_limit = ()
    if "rate_limit" in present:
        rate_limit = validate_route_rate_limit(report, (*path, "rate_limit"), present["rate_limit"], limit_names)
    access = validate_access(report, (*path, "access"), present["access"]) if "access" in present else None
    cors = validate_cors(report, (*path, "cors"), present["cors"]) if "cors" in present else None
    websocket = (
        validate_websocket(report, (*path, "websocket"), present["websocket"], upstream_names)
        if "websocket" in present
        else None
    )
    if bridged and websocket is None:
        return None
    if websocket is not None and not bridged and "upstream" not in present and "upstreams" not in present:
        report.error((*path, "websocket"), "websocket needs upstream or upstreams: the upgrade is forwarded")
    aggregate = (
        validate_aggregate(report, (*path, "aggregate"), present["aggregate"], match, upstream_names)
        if "aggregate" in present
        else ()
    )
    compress = validate_compress(report, (*path, "compress"), present["compress"]) if "compress" in present else None
    if compress is not None and ("respond" in present or "redirect" in present):
        report.error(
            (*path, "compress"),
            "compress applies to upstream and aggregated responses; this route answers with a fixed response",
        )
    if "upstream" not in present and "upstreams" not in present:
        for key in ("strip_prefix", "rewrite"):
            if key in present:
                report.error((*path, key), f"{key} changes the path sent upstream, and this route has no upstream")
        if headers is not None and headers.request != HeaderOps():
            report.error((*path, "headers", "request"), "this route has no upstream to send request headers to")
    if match is None or len(targets) != 1:
        return None
    if (
        ("upstream" in present and upstream is None)
        or ("upstreams" in present and not split)
        or ("respond" in present and respond is None)
        or ("redirect" in present and redirect is None)
        or ("aggregate" in present and not aggregate)
    ):
        return None
    return Route(
        index=index,
        match=match,
        upstream=upstream or "",
        strip_prefix=strip_prefix,
        headers=headers or RouteHeaders(),
        line=report.line(path),
        rate_limit=rate_limit,
        upstreams=split,
        sticky=sticky,
        rewrite=rewrite,
        access=access,
        cors=cors,
        websocket=websocket,
        respond=respond,
        redirect=redirect,
        aggregate=aggregate,
        compress=compress,
    )


def validate_match(report: Report, path: Path, value: Any) -> Match | None:
    present = section(report, path, value, ("path", "prefix", "methods", "host", "headers", "query"))
    if present is None:
        return None
    if ("path" in present) == ("prefix" in present):
        report.error(path, "needs exactly one of 'path' (exact) or 'prefix'")
        return None
    plain = {k: v for k, v in present.items() if k not in ("headers", "query")}
    kwargs = fields(
        report,
        path,
        plain,
        {
            "path": validate_route_path,
            "prefix": validate_prefix,
            "methods": validate_methods,
            "host": validate_host_pattern,
        },
    )
    conditions: list[Condition] = []
    ok = len(kwargs) == len(plain)
    for kind in ("headers", "query"):
        if kind in present:
            found = validate_conditions(
                report, (*path, kind), "header" if kind == "headers" else "query", present[kind]
            )
            ok = ok and found is not None
            conditions += found or ()
    if not ok:
        return None
    return Match(**kwargs, conditions=tuple(conditions))


def validate_conditions(report: Report, path: Path, kind: str, value: Any) -> list[Condition] | None:
    """`{NAME: VALUE}` (exact), `{NAME: {prefix: P}}` or `{NAME: {present: true}}`."""
    if not isinstance(value, dict) or not value:
        report.error(path, f"expected a non-empty mapping of {kind} names to conditions, got {kind_of(value)}")
        return None
    out: list[Condition] = []
    for raw_name, raw in value.items():
        item_path = (*path, str(raw_name))
        if kind == "header":
            name = report.check(item_path, raw_name, validate_header_name, None)
        else:
            name = raw_name if isinstance(raw_name, str) and raw_name and "&" not in raw_name else None
            if name is None:
                report.error(item_path, f"{raw_name!r} is not a query parameter name")
        if name is None:
            continue
        if isinstance(raw, str):
            out.append(Condition(kind, name, "exact", raw))  # type: ignore[arg-type]
            continue
        if isinstance(raw, dict) and len(raw) == 1 and raw.get("present") is True:
            out.append(Condition(kind, name, "present"))  # type: ignore[arg-type]
            continue
        if isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("prefix"), str) and raw["prefix"]:
            out.append(Condition(kind, name, "prefix", raw["prefix"]))  # type: ignore[arg-type]
            continue
        report.error(
            item_path, f"expected a value (exact match), {{prefix: TEXT}} or {{present: true}}, got {shown(raw)}"
        )
    return out


def _report_duplicate_routes(report: Report, path: Path, routes: list[Route]) -> None:
    """Two routes with the same host and pattern and a common method: the second could never be
    chosen for those methods, which is always a mistake."""
    seen: dict[tuple[str | None, str, str], list[Route]] = {}
    for route in routes:
        match = route.match
        kind, pattern = ("path", match.path) if match.path is not None else ("prefix", match.prefix or "/")
        # Parameter names do not change what a pattern matches: /u/{id} and /u/{name} are one.
        key = (match.host, kind, _PARAM.sub(lambda param: "{*}" if param.group(2) else "{}", pattern))
        for earlier in seen.get(key, []):
            common = _common_methods(earlier.match.methods, match.methods)
            if common is not None and (match.conditions or earlier.match.conditions):
                # Routes told apart by conditions share one entry of the router: the same
                # spelling of the pattern and the same methods, and not the same conditions.
                if (earlier.match.path, earlier.match.prefix, earlier.match.methods) != (
                    match.path,
                    match.prefix,
                    match.methods,
                ):
                    report.error(
                        (*path, route.index, "match"),
                        f"routes[{earlier.index}] matches the same requests with other methods or another spelling"
                        f" of the pattern; routes told apart by headers or query must use the same {kind} and methods",
                    )
                    break
                if set(earlier.match.conditions) == set(match.conditions):
                    report.error(
                        (*path, route.index, "match"),
                        f"same match and conditions as routes[{earlier.index}]:"
                        f" routes[{route.index}] could never be chosen",
                    )
                    break
                continue
            if common is not None:
                methods = ",".join(common) if common else "*"
                report.error(
                    (*path, route.index, "match"),
                    f"same match as routes[{earlier.index}] (host {match.host or '*'}, {kind} {pattern},"
                    f" methods {methods}): routes[{route.index}] could never be chosen",
                )
                break
        seen.setdefault(key, []).append(route)


def _common_methods(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Methods both match: () stands for every method, None for none in common."""
    if a is None and b is None:
        return ()
    if a is None or b is None:
        return a or b
    common = tuple(method for method in a if method in b)
    return common or None


def validate_route_headers(report: Report, path: Path, value: Any) -> RouteHeaders:
    present = section(report, path, value, ("request", "response"))
    if present is None:
        return RouteHeaders()
    return RouteHeaders(
        **{
            direction: validate_header_ops(report, (*path, direction), direction, ops)
            for direction, ops in present.items()
        }
    )


def validate_header_ops(report: Report, path: Path, direction: str, value: Any) -> HeaderOps:
    present = section(report, path, value, ("set", "remove"))
    if present is None:
        return HeaderOps()
    validate_name = editable_header(direction)
    edits: dict[str, Path] = {}

    def claim(name: str, name_path: Path) -> bool:
        if name in edits:
            report.error(name_path, f"header {name!r} is already edited at {format_path(edits[name])}")
            return False
        edits[name] = name_path
        return True

    set_ops: list[tuple[str, str]] = []
    if "set" in present:
        set_path = (*path, "set")
        if not isinstance(present["set"], dict):
            report.error(set_path, f"expected a mapping of header names to values, got {kind_of(present['set'])}")
        else:
            for raw_name, raw_value in present["set"].items():
                item_path = (*set_path, str(raw_name))
                name = report.check(item_path, raw_name, validate_name, None)
                header_value = report.check(item_path, raw_value, validate_header_value, None)
                if name is not None and header_value is not None and claim(name, item_path):
                    set_ops.append((name, header_value))
    removes: list[str] = []
    if "remove" in present:
        remove_path = (*path, "remove")
        for index, raw_name in enumerate(sequence(report, remove_path, present["remove"])):
            item_path = (*remove_path, index)
            name = report.check(item_path, raw_name, validate_name, None)
            if name is not None and claim(name, item_path):
                removes.append(name)
    return HeaderOps(set=tuple(set_ops), remove=tuple(removes))


# ---------------------------------------------------------------------------------------------
# Leaf validators


def validate_route_path(value: Any) -> str:
    """An exact path, possibly with `{name}` segments and a last `{name*}` catch-all segment."""
    text = _route_string(value, "path")
    segments = _segments(text)
    names: set[str] = set()
    for position, segment in enumerate(segments):
        if "{" not in segment and "}" not in segment:
            _check_literal_segment(segment, position == len(segments) - 1)
            continue
        param = _PARAM.fullmatch(segment)
        if param is None:
            raise ValueError(
                f"segment {segment!r} must be literal text or one whole parameter such as {{id}}"
                " (parameter names are letters, digits and '_', not starting with a digit)"
            )
        name, catch_all = param.groups()
        if catch_all and position != len(segments) - 1:
            raise ValueError(f"catch-all {segment!r} must be the last segment")
        if name in names:
            raise ValueError(f"parameter name {name!r} is used twice")
        names.add(name)
    return text


def validate_prefix(value: Any) -> str:
    """A literal path prefix; a trailing slash is dropped, since a prefix matches whole segments
    either way (`/api` and `/api/` both match `/api`, `/api/` and `/api/x`)."""
    text = _route_string(value, "prefix")
    if "{" in text or "}" in text:
        raise ValueError("a prefix is literal; use 'path' for {parameters}")
    segments = _segments(text)
    for position, segment in enumerate(segments):
        _check_literal_segment(segment, position == len(segments) - 1)
    return text.rstrip("/") or "/"


def _route_string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} string starting with '/', got {shown(value)}")
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")
    if "?" in value or "#" in value:
        raise ValueError("routes match the path only; remove the query ('?') or fragment ('#')")
    return value


def _segments(pattern: str) -> list[str]:
    segments = pattern[1:].split("/")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"has more than {MAX_SEGMENTS} segments")
    return segments


def _check_literal_segment(segment: str, last: bool) -> None:
    """Refuse what request path normalization makes impossible to match, so a route that could
    never match fails at load time instead of silently answering 404."""
    if segment == "":
        if not last:
            raise ValueError("empty segment ('//'): repeated slashes are merged before routing")
        return
    if segment in (".", ".."):
        raise ValueError(f"dot segment {segment!r}: dot segments are resolved before routing")
    position = 0
    while position < len(segment):
        char = segment[position]
        if char == "%":
            escape = segment[position + 1 : position + 3]
            if len(escape) != 2 or not all(c in "0123456789abcdefABCDEF" for c in escape):
                raise ValueError(f"invalid percent-escape in segment {segment!r}")
            decoded = chr(int(escape, 16))
            if escape != escape.upper():
                raise ValueError(
                    f"write '%{escape.upper()}' instead of '%{escape}': escapes are upper-cased before routing"
                )
            if decoded in _UNRESERVED:
                raise ValueError(f"write {decoded!r} instead of '%{escape}': it is decoded before routing")
            if decoded in "/\\\0":
                raise ValueError(f"'%{escape}' can never match: requests containing it are refused")
            position += 3
            continue
        if char == "\\":
            raise ValueError("a backslash can never match: requests containing one are refused")
        if char not in _PATH_CHARS:
            raise ValueError(f"character {char!r} is not allowed in a path (percent-encode it)")
        position += 1


def validate_methods(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of methods such as [GET, POST], got {shown(value)}")
    if not value:
        raise ValueError("must list at least one method (omit 'methods' to match any method)")
    methods: list[str] = []
    for method in value:
        if not isinstance(method, str) or not TOKEN.fullmatch(method):
            raise ValueError(f"{method!r} is not a method name")
        if method == "*":
            raise ValueError("omit 'methods' to match any method")
        if method != method.upper():
            raise ValueError(f"methods are case-sensitive: write {method.upper()!r}, not {method!r}")
        if method in methods:
            raise ValueError(f"method {method!r} is listed twice")
        methods.append(method)
    return tuple(methods)


def validate_host_pattern(value: Any) -> str:
    """A route's host: a name or IP without port, optionally `*.suffix`; stored lower-case because
    host names are case-insensitive."""
    if not isinstance(value, str):
        raise ValueError(f"expected a host name string, got {shown(value)}")
    host = value.lower()
    if host in ("", "*"):
        raise ValueError("omit 'host' to match any host")
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            raise ValueError(f"{value!r} is not a valid IPv6 literal") from None
    if ":" in host:
        raise ValueError(f"{value!r}: routes match the Host without its port; remove ':{host.rpartition(':')[2]}'")
    if is_ipv4(host):
        return host
    name = host[2:] if host.startswith("*.") else host
    if "*" in name:
        raise ValueError("only a leading '*.' wildcard is supported (e.g. '*.example.com')")
    if not is_dns_name(name):
        raise ValueError(f"{value!r} is not a valid host name")
    return host
