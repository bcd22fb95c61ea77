"""`fastgw check`: validate a config and show how requests will be routed, without starting
anything, so a config can be vetted (in CI, before a reload) exactly as `run` would load it."""

from __future__ import annotations

import sys
from typing import TextIO

from .load import load
from .model import Config, Route
from .report import ConfigError

__all__ = ["check_main", "route_table"]

_HEADER = ("#", "METHODS", "HOST", "MATCH", "UPSTREAM", "TARGETS")


def check_main(path: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Exit status 0 with the route table and `config ok` on `out`, or 2 with one problem line
    per problem on `err`; the file is checked against this host too (`load(host_checks=True)`),
    as `run` does."""
    try:
        config = load(path, host_checks=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return 2
    for line in route_table(config):
        print(line, file=out)
    print("config ok", file=out)
    return 0


def route_table(config: Config) -> list[str]:
    """The routes in match-table form, one line each, columns aligned."""
    rows = [_HEADER, *(_row(config, route) for route in config.routes)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADER) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    ]
    if not config.routes:
        lines.append("(no routes: every request is answered 404)")
    return lines


def _row(config: Config, route: Route) -> tuple[str, str, str, str, str, str]:
    match = route.match
    if match.path is not None:
        pattern = f"path {match.path}"
    else:
        pattern = f"prefix {match.prefix}" + (" (strip)" if route.strip_prefix else "")
    destination, targets = _destination(config, route)
    return (
        str(route.index),
        ",".join(match.methods) if match.methods else "*",
        match.host or "*",
        pattern,
        destination,
        targets,
    )


def _destination(config: Config, route: Route) -> tuple[str, str]:
    """(where the route's requests go, the targets behind it)."""
    if route.respond is not None:
        return f"respond {route.respond.status}", "-"
    if route.redirect is not None:
        return f"redirect {route.redirect.status}", route.redirect.to
    if route.aggregate:
        calls = ", ".join(f"{call.name}:{call.upstream}" for call in route.aggregate)
        return f"aggregate ({len(route.aggregate)} calls)", calls
    bridge = route.websocket.bridge if route.websocket is not None else None
    if bridge is not None:
        return f"websocket bridge -> {bridge.upstream}", bridge.path
    if route.upstreams:
        total = sum(w.weight for w in route.upstreams)
        split = ", ".join(f"{w.name} {100 * w.weight / total:g}%" for w in route.upstreams)
        return split + (f" (sticky {route.sticky})" if route.sticky else ""), "-"
    upstream = config.upstreams[route.upstream]
    targets = ", ".join(
        f"{target.address}" + (f" (w={target.weight})" if target.weight != 1 else "") for target in upstream.targets
    )
    return route.upstream, targets
