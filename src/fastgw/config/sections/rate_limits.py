"""`rate_limits` and `rate_limit_table` (DESIGN §4, §8): the named limits, the shared table of
their buckets, and the check of the limit names a route's `rate_limit` lists."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from ..model import RateLimit, RateLimitTable
from ..report import Context, Report, fields, named_items, section, shown, suggest
from ..units import parse_rate
from ..validators import (
    TOKEN,
    int_between,
    is_port,
    one_of,
    validate_bool,
    validate_host,
    validate_positive_duration,
    validate_string,
)
from ..yamlsrc import Path

__all__ = ["validate_rate_limit_table", "validate_rate_limits", "validate_route_rate_limit"]

MAX_RATE = 1e9
"""One token per ns: the finest rate the bucket's integer ns arithmetic represents."""
MAX_CLUSTER_RATE = 1e6
"""The Redis script keeps time in µs (as float), so a cluster limit needs at least 1 µs per token."""
MAX_BURST = 10**9
MAX_SPAN = 2**61 / 1e9
"""Seconds a bucket may take to refill (burst / rate): 73 years, the table's 64-bit ns bound."""
MAX_REDIS_TIMEOUT = 10.0
MAX_TABLE_CAPACITY = 2**26
RATE_LIMIT_KEYS = ("ip", "route", "header:NAME", "claim:NAME", "consumer")
_CLUSTER_ONLY = ("redis", "on_redis_error", "redis_timeout")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def validate_rate_limits(report: Report, path: Path, value: Any, context: Context) -> Mapping[str, RateLimit]:
    return MappingProxyType(named_items(report, path, value, "rate limit", "limits", validate_rate_limit))


def validate_rate_limit(report: Report, path: Path, name: str, value: Any) -> RateLimit | None:
    """One limit; the default burst is one second of rate, rounded up (DESIGN §8)."""
    present = section(
        report,
        path,
        value,
        ("rate", "burst", "key", "scope", "redis", "on_redis_error", "redis_timeout", "enforce"),
        required=("rate",),
    )
    if present is None or "rate" not in present:
        return None
    rate = report.check((*path, "rate"), present["rate"], validate_rate, None)
    kwargs = fields(
        report,
        path,
        present,
        {
            "burst": int_between(1, MAX_BURST),
            "key": validate_limit_key,
            "scope": one_of("local", "cluster"),
            "redis": validate_redis_url,
            "on_redis_error": one_of("open", "closed"),
            "redis_timeout": validate_redis_timeout,
            "enforce": validate_bool,
        },
    )
    bad = len(kwargs) != len(present) - 1
    scope = present.get("scope", "local")
    if scope == "cluster":
        if "redis" not in present:
            report.error((*path, "redis"), "required key is missing (scope: cluster keeps its buckets in Redis)")
            bad = True
        if rate is not None and rate[0] > MAX_CLUSTER_RATE:
            report.error((*path, "rate"), f"a cluster limit may be at most {MAX_CLUSTER_RATE:.0f}/s, got {rate[1]!r}")
            bad = True
    elif scope == "local":
        for key in _CLUSTER_ONLY:
            if key in present:
                report.error((*path, key), f"{key!r} only applies to scope: cluster", at_key=True)
                bad = True
    if rate is None or bad:
        return None
    per_second, text = rate
    burst = kwargs.pop("burst", max(1, math.ceil(per_second)))
    if burst / per_second >= MAX_SPAN:
        report.error((*path, "burst"), f"burst / rate ({burst} / {text}) takes more than 73 years to refill")
        return None
    return RateLimit(name=name, rate=per_second, burst=burst, rate_text=text, line=report.line(path), **kwargs)


def validate_rate_limit_table(report: Report, path: Path, value: Any, context: Context) -> RateLimitTable:
    validators = {"capacity": int_between(8, MAX_TABLE_CAPACITY)}
    present = section(report, path, value, validators)
    return RateLimitTable(**fields(report, path, present or {}, validators))


def validate_route_rate_limit(report: Report, path: Path, value: Any, limit_names: Collection[str]) -> tuple[str, ...]:
    """A limit name or a non-empty list of them, each defined under `rate_limits`, once."""
    items: list[tuple[Path, Any]]
    if isinstance(value, list):
        if not value:
            report.error(path, "must not be empty (omit rate_limit for a route without limits)")
        items = [((*path, index), item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    names: list[str] = []
    for item_path, item in items:
        if not isinstance(item, str) or not item:
            report.error(item_path, f"expected a rate limit name, got {shown(item)}")
            continue
        if item not in limit_names:
            suggestion = suggest(item, limit_names)
            known = f"; defined: {', '.join(sorted(limit_names))}" if limit_names and not suggestion else ""
            report.error(item_path, f"unknown rate limit {item!r}{suggestion}{known}")
            continue
        if item in names:
            report.error(item_path, f"rate limit {item!r} is listed twice")
            continue
        names.append(item)
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# Leaf validators


def validate_rate(value: Any) -> tuple[float, str]:
    """Tokens per second, and the rate as written."""
    count, per = parse_rate(value)
    rate = count / per
    if rate > MAX_RATE:
        raise ValueError(f"{value!r} is above the maximum of {MAX_RATE:.0f}/s")
    return rate, str(value)


def validate_limit_key(value: Any) -> str:
    """`ip`, `route`, `header:NAME` (stored `header:` + lower-case NAME), `claim:NAME` (a claim
    of the verified token) or `consumer` (the authenticated consumer). The last two need `auth`
    on every route that uses the limit (checked with the routes, `sections/auth.py`); a request
    without the value is charged to its client address (`fastgw.ratelimit.keys`)."""
    hint = f"expected one of {', '.join(RATE_LIMIT_KEYS)}, got {shown(value)}"
    if not isinstance(value, str):
        raise ValueError(hint)
    if value in ("ip", "route"):
        return value
    kind, sep, name = value.partition(":")
    if value == "consumer":
        return value
    if sep and kind == "claim":
        if not name or any(not 0x21 <= ord(c) <= 0x7E for c in name):
            raise ValueError("claim: needs a claim name, as in claim:sub")
        return value
    if not sep or kind != "header":
        suggestion = suggest(value, ("ip", "route", "consumer"))
        raise ValueError(hint + suggestion)
    if not TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return f"header:{name.lower()}"


def validate_redis_url(value: Any) -> str:
    """`redis://[user:password@]host[:port][/db]`, `rediss://` (TLS) or `unix:///path.sock`."""
    text = validate_string(value)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in _REDIS_SCHEMES:
        schemes = ", ".join(_REDIS_SCHEMES)
        raise ValueError(f"expected a URL such as redis://127.0.0.1:6379/0 (schemes: {schemes}), got {text!r}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"a unix URL needs an absolute socket path, as unix:///run/redis.sock, got {text!r}")
        return text
    authority, _, db = rest.partition("/")
    hostport = authority.rpartition("@")[2]
    if not hostport:
        raise ValueError(f"missing host in {text!r}")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = hostport.partition(":")
    validate_host(host)
    if port and not is_port(port):
        raise ValueError(f"port must be from 1 to 65535, got {port!r}")
    if db and not db.isdigit():
        raise ValueError(f"the database is a number (redis://host:port/0), got {db!r}")
    return text


def validate_redis_timeout(value: Any) -> float:
    seconds = validate_positive_duration(value)
    if seconds > MAX_REDIS_TIMEOUT:
        limit = f"{MAX_REDIS_TIMEOUT:.0f}s"
        raise ValueError(f"must be at most {limit} (requests never wait for Redis longer), got {value!r}")
    return seconds
