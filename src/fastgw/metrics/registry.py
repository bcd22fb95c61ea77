"""Counter declarations: how a gateway feature adds its counters to `/metrics`, in one place.

As Envoy's `ALL_*_STATS` macros: each module declares its counters once, in one list, at module
level (so that the master, which lays out the shared rows before forking, knows them):

    # fastgw/cache/stats.py
    from fastgw.metrics import PER_ROUTE, declare

    CACHE = declare("cache", {
        "hit": "Requests answered from the cache.",
        "miss": "Cacheable requests not found in the cache.",
        "store": "Responses stored.",
        "bypass": "Requests the cache did not apply to (method, Authorization, no-store).",
    }, per=PER_ROUTE)

and, once per worker when the feature's filter is built (`rt` is the worker's Runtime):

    block = rt.metrics.block(CACHE)         # this worker's counters of the group
    HIT = CACHE.at("hit")                   # offsets, computed once
    ...
    block.inc(HIT + CACHE.width * plan.index)        # per request, from Python (~100 ns)
    (<StatBlock>block).add(HIT + ..., 1)             # per request, from Cython (one add)

`/metrics` then shows `fastgw_cache_hit_total{route="/api/users*"}` with the help text above,
summed over the workers and kept across worker restarts and reloads. `per` is None (one set of
counters for the gateway), PER_ROUTE (one set per route, labelled `route`), or `(label,
instances)` where `instances(config)` lists the label values (e.g. the names of `auth` entries:
`per=("auth", lambda config: list(config.auth))`); instance `i` is the i-th value.
The module must be imported by the master: a module imported by the feature's chain builder
(fastgw.pipeline.chain) is, since the master imports the worker's code before it forks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Instances = Callable[[Any], Sequence[str]]
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class StatGroup:
    """A feature's counters: `fastgw_<name>_<counter>_total`, per instance of `label`."""

    name: str
    counters: tuple[str, ...]
    help: Mapping[str, str]
    label: str | None = None
    instances: Instances | None = None

    @property
    def width(self) -> int:
        """Counters per instance: instance `i`'s counters start at `i * width`."""
        return len(self.counters)

    def at(self, counter: str, instance: int = 0) -> int:
        """The offset of `counter` of instance `instance` in the group's block."""
        return instance * len(self.counters) + self.counters.index(counter)

    def labels(self, config: Any) -> list[str]:
        """The label value of each instance for `config` (one unnamed instance without `per`)."""
        return list(self.instances(config)) if self.instances is not None else [""]


REGISTRY: dict[str, StatGroup] = {}
"""Every declared group by name, in declaration order (the order of the row layout)."""


def _route_instances(config: Any) -> list[str]:
    from fastgw.metrics.layout import route_labels

    return route_labels(config)


PER_ROUTE: tuple[str, Instances] = ("route", _route_instances)
"""One set of counters per configured route, labelled like the request metrics."""


def declare(name: str, counters: Mapping[str, str], *, per: tuple[str, Instances] | None = None) -> StatGroup:
    """Declares the counters `counters` (name -> help text) of feature `name`; returns the group
    to find them with. Declaring the same group twice (a module reloaded) gives the same one."""
    if not _NAME.fullmatch(name) or not all(_NAME.fullmatch(c) for c in counters):
        raise ValueError(f"stat group {name!r}: names are lower-case letters, digits and _")
    if not counters:
        raise ValueError(f"stat group {name!r} declares no counter")
    label, instances = per if per is not None else (None, None)
    group = StatGroup(name, tuple(counters), dict(counters), label, instances)
    existing = REGISTRY.get(name)
    if existing is not None and (existing.counters, existing.label) != (group.counters, group.label):
        raise ValueError(f"stat group {name!r} is declared twice with different counters")
    REGISTRY.setdefault(name, group)
    return REGISTRY[name]
