"""`routes[].aggregate`: the calls of an aggregation route, by name (DESIGN §3, §4).

Checked here, so that a mistake fails at load and not as a 5xx: each call's keys and upstream,
its templates (syntax, and that every reference has a source: a path parameter of `match.path`,
a claim, query parameter or header, or another call of the same aggregate), and the dependencies
between calls: no cycle, and at most two stages (a call may read calls that read no other call).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from fastgw.aggregate.template import NAMESPACES, Template, parse

from ..model import AggregateCall, IntrospectionAuth, JwtAuth, Match, Route
from ..report import Context, Report, section, sequence, shown, suggest
from ..validators import editable_header, validate_bool, validate_positive_duration, validate_size, validate_string
from ..yamlsrc import Path, kind_of
from .route_targets import route_params

__all__ = ["check_aggregate_claims", "validate_aggregate"]

CALL_KEYS = ("upstream", "path", "headers", "timeout", "max_body", "optional", "keep", "drop", "rename")
MAX_CALLS = 32
MAX_CALL_BODY = 64 * 1024 * 1024
_CALL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"[^.\s]+(\.[^.\s]+)*")
RESERVED = (*NAMESPACES, "errors")
"""Names a call cannot have: the template sources, and the key optional failures are listed under."""


def validate_aggregate(
    report: Report, path: Path, value: Any, match: Match | None, upstream_names: Collection[str]
) -> tuple[AggregateCall, ...]:
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping of call names to calls, got {kind_of(value)}")
        return ()
    if not value:
        report.error(path, "needs at least one call")
        return ()
    if len(value) > MAX_CALLS:
        report.error(path, f"has {len(value)} calls; at most {MAX_CALLS}")
        return ()
    names = frozenset(str(name) for name in value)
    params = route_params(match)
    calls: list[AggregateCall] = []
    templates: dict[str, list[tuple[Path, Template]]] = {}
    ok = True
    for raw_name, body in value.items():
        name = str(raw_name)
        call_path = (*path, name)
        if not _CALL_NAME.fullmatch(name):
            report.error(call_path, f"call name {name!r} must be letters, digits and '_', not starting with a digit"
                         " (it is used in templates as {name.field})", at_key=True)
            ok = False
            continue
        if name in RESERVED:
            report.error(call_path, f"{name!r} is reserved (templates read claim., query., header.; failures are"
                         " listed under 'errors'): choose another call name", at_key=True)
            ok = False
            continue
        call = _validate_call(report, call_path, name, body, names, params, upstream_names, templates)
        if call is None:
            ok = False
        else:
            calls.append(call)
    depends = {c.name: c.depends for c in calls}
    if not _check_stages(report, path, depends, templates) or not ok:
        return ()
    return tuple(calls)


def _validate_call(
    report: Report, path: Path, name: str, value: Any, names: frozenset[str], params: set[str],
    upstream_names: Collection[str], templates: dict[str, list[tuple[Path, Template]]],
) -> AggregateCall | None:
    present = section(report, path, value, CALL_KEYS, required=("upstream", "path"))
    if present is None or "upstream" not in present or "path" not in present:
        return None
    ok = True
    upstream = report.check((*path, "upstream"), present["upstream"], validate_string, None)
    if upstream is not None and upstream not in upstream_names:
        known = f"; defined: {', '.join(sorted(upstream_names))}" if upstream_names else "; no upstreams are defined"
        suggestion = suggest(upstream, upstream_names)
        report.error((*path, "upstream"), f"unknown upstream {upstream!r}{suggestion or known}")
        upstream = None
    found: list[tuple[Path, Template]] = []
    others = names - {name}
    path_template = _template(report, (*path, "path"), present["path"], others, params, name, is_path=True)
    if path_template is not None:
        found.append(((*path, "path"), path_template))
    headers: list[tuple[str, str]] = []
    if "headers" in present:
        headers_path = (*path, "headers")
        if not isinstance(present["headers"], dict):
            report.error(headers_path, f"expected a mapping of header names to value templates, got "
                         f"{kind_of(present['headers'])}")
            ok = False
        else:
            validate_name = editable_header("request")
            for raw_header, raw_value in present["headers"].items():
                item_path = (*headers_path, str(raw_header))
                header = report.check(item_path, raw_header, validate_name, None)
                template = _template(report, item_path, raw_value, others, params, name, is_path=False)
                if header is None or template is None:
                    ok = False
                    continue
                headers.append((header, template.text))
                found.append((item_path, template))
    timeout = None
    if "timeout" in present:
        timeout = report.check((*path, "timeout"), present["timeout"], validate_positive_duration, None)
        ok = ok and timeout is not None
    max_body = report.check((*path, "max_body"), present.get("max_body", "1MiB"), _validate_max_body, None)
    optional = report.check((*path, "optional"), present.get("optional", False), validate_bool, False)
    keep = _fields(report, (*path, "keep"), present["keep"]) if "keep" in present else ()
    drop = _fields(report, (*path, "drop"), present["drop"]) if "drop" in present else ()
    rename = _rename(report, (*path, "rename"), present["rename"]) if "rename" in present else ()
    if upstream is None or path_template is None or max_body is None or keep is None or drop is None \
            or rename is None or not ok:
        return None
    templates[name] = found
    depends = sorted({call for _, t in found for call in t.calls})
    return AggregateCall(
        name=name,
        upstream=upstream,
        path=path_template.text,
        headers=tuple(headers),
        timeout=timeout,
        max_body=max_body,
        optional=optional,
        keep=keep,
        drop=drop,
        rename=rename,
        depends=tuple(depends),
    )


def _template(
    report: Report, path: Path, value: Any, calls: frozenset[str], params: set[str], name: str, *, is_path: bool
) -> Template | None:
    if not isinstance(value, str):
        report.error(path, f"expected a template string, got {shown(value)}")
        return None
    try:
        template = parse(value, calls | {name}, is_path=is_path)
    except ValueError as exc:
        report.error(path, str(exc))
        return None
    ok = True
    for ref in template.refs:
        if ref.kind == "param" and ref.name not in params:
            if params:
                where = f"match.path has {', '.join('{' + p + '}' for p in sorted(params))}"
            else:
                where = "this route's match has no {parameters}"
            report.error(path, f"{ref.text}: no path parameter {ref.name!r}{suggest(ref.name, params)}: {where}; "
                         "a request value is written {claim.NAME}, {query.NAME} or {header.NAME}")
            ok = False
        elif ref.kind == "call" and ref.name == name:
            report.error(path, f"{ref.text}: a call cannot use its own answer")
            ok = False
    return template if ok else None


def _validate_max_body(value: Any) -> int:
    size = validate_size(value)
    if not 1 <= size <= MAX_CALL_BODY:
        raise ValueError(f"must be from 1B to 64MiB, got {value!r}")
    return size


def _fields(report: Report, path: Path, value: Any) -> tuple[str, ...] | None:
    """Field names (dots for nested objects: `address.city`), each once."""
    out: list[str] = []
    ok = True
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        if not isinstance(item, str) or not _FIELD.fullmatch(item):
            report.error((*path, index), f"expected a field name (dots for nested fields), got {shown(item)}")
            ok = False
        elif item in out:
            report.error((*path, index), f"field {item!r} is listed twice")
            ok = False
        else:
            out.append(item)
    return tuple(out) if ok and isinstance(value, list) and value else None


def _rename(report: Report, path: Path, value: Any) -> tuple[tuple[str, str], ...] | None:
    """`{old: new}` for top-level fields."""
    if not isinstance(value, dict) or not value:
        report.error(path, f"expected a non-empty mapping of field names to new names, got {kind_of(value)}")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for old, new in value.items():
        item_path = (*path, str(old))
        if not isinstance(new, str) or not new or not isinstance(old, str) or not old:
            report.error(item_path, f"expected a field name mapped to its new name, got {shown(new)}")
            ok = False
        elif new in (n for _, n in out):
            report.error(item_path, f"two fields are renamed to {new!r}")
            ok = False
        else:
            out.append((old, new))
    return tuple(out) if ok else None


def _check_stages(
    report: Report, path: Path, depends: dict[str, tuple[str, ...]], templates: dict[str, list[tuple[Path, Template]]]
) -> bool:
    """No cycle, then no call reading a call that reads another (two stages at most); each
    problem reported at the template of the call where it shows."""

    def where(name: str, dep: str) -> Path:
        for template_path, template in templates.get(name, []):
            if dep in template.calls:
                return template_path
        return (*path, name)

    cycles: set[frozenset[str]] = set()

    def visit(stack: list[str]) -> None:
        for dep in depends.get(stack[-1], ()):
            if dep in stack:
                cycle = stack[stack.index(dep):]
                if frozenset(cycle) not in cycles:
                    cycles.add(frozenset(cycle))
                    report.error(where(cycle[-1], dep), "dependency cycle: " + " -> ".join([*cycle, dep]))
            elif len(stack) <= len(depends):
                visit([*stack, dep])

    for name in depends:
        visit([name])
    in_cycle = set().union(*cycles)
    ok = not cycles
    for name, deps in depends.items():
        if name in in_cycle:
            continue
        for dep in deps:
            if dep not in in_cycle and depends.get(dep):
                report.error(where(name, dep), f"{name} uses {dep}, which uses {depends[dep][0]}: at most two "
                             "stages (a call may use the answers of calls that use no other call)")
                ok = False
                break
    return ok


def check_aggregate_claims(report: Report, path: Path, route: Route | None, context: Context) -> Route | None:
    """A template reading `{claim.NAME}` needs the route's `auth` to give token claims (jwt or
    introspection, every one listed): otherwise no request could ever fill it. Run once the
    route's auth is known."""
    if route is None or not route.aggregate:
        return route
    specs = context.validated.get("auth") or {}
    used = [specs[name] for name in route.auth if name in specs]
    gives_claims = bool(route.auth) and all(isinstance(spec, (JwtAuth, IntrospectionAuth)) for spec in used)
    if gives_claims:
        return route
    for call in route.aggregate:
        fields = [("path", call.path), *((("headers", name), text) for name, text in call.headers)]
        for where, text in fields:
            if "{claim." in text:
                key = (*path, "aggregate", call.name, *(where if isinstance(where, tuple) else (where,)))
                why = "has no auth" if not route.auth else "has an auth that gives no token claims (api_key, mtls)"
                report.error(key, f"reads token claims, and this route {why}: add a jwt or introspection auth")
                return route
    return route
