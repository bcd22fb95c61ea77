"""`upstreams`: the named groups of targets routes send requests to, with their balancing, timeouts,
active and passive health checks and retries."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ..model import (
    Address,
    Balance,
    ConnectionQueue,
    HashKey,
    HealthCheck,
    Outlier,
    Retries,
    RetryOn,
    Target,
    Timeouts,
    Upstream,
)
from ..report import Context, Report, fields, named_items, section, sequence, shown, suggest
from ..validators import (
    TOKEN,
    int_between,
    is_port,
    validate_address,
    validate_duration,
    validate_host,
    validate_percent,
    validate_positive_duration,
    validate_string,
)
from ..yamlsrc import Path, kind_of
from .tls import validate_upstream_tls

__all__ = ["validate_upstreams"]

MAX_WEIGHT = 1000
MAX_ATTEMPTS = 10
MAX_THRESHOLD = 100
BALANCES = ("weighted", "round_robin", "least_conn", "p2c_ewma", "hash")
RETRY_CONDITIONS = ("connect_error", "reset", "timeout")
HASH_KEYS = ("ip", "path", "header:NAME", "cookie:NAME")
UPSTREAM_KEYS = (
    "targets",
    "keepalive",
    "max_connections",
    "max_connecting",
    "queue",
    "timeouts",
    "host_header",
    "balance",
    "hash_key",
    "health",
    "outlier",
    "retries",
    "tls",
)


def validate_upstreams(report: Report, path: Path, value: Any, context: Context) -> Mapping[str, Upstream]:
    upstreams = named_items(report, path, value, "upstream", "upstreams", validate_upstream)
    bodies = {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}
    for name, upstream in upstreams.items():
        body = bodies.get(name)
        if isinstance(body, dict) and "tls" in body:
            tls = validate_upstream_tls(report, (*path, name, "tls"), body["tls"], context)
            upstreams[name] = replace(upstream, tls=tls)
    return MappingProxyType(upstreams)


def validate_upstream(report: Report, path: Path, name: str, value: Any) -> Upstream | None:
    present = section(report, path, value, UPSTREAM_KEYS, required=("targets",))
    if present is None:
        return None
    targets = validate_targets(report, (*path, "targets"), present["targets"]) if "targets" in present else ()
    kwargs = fields(report, path, present, {
        "keepalive": int_between(0),
        "max_connections": int_between(0),
        "max_connecting": int_between(1),
        "host_header": validate_host_header,
    })
    if "timeouts" in present:
        kwargs["timeouts"] = validate_timeouts(report, (*path, "timeouts"), present["timeouts"])
    if "queue" in present:
        kwargs["queue"] = validate_queue(report, (*path, "queue"), present["queue"])
    kwargs.update(_balancing(report, path, present, targets))
    if "health" in present:
        kwargs["health"] = validate_health(report, (*path, "health"), present["health"])
    if "outlier" in present:
        kwargs["outlier"] = validate_outlier(report, (*path, "outlier"), present["outlier"])
    if "retries" in present:
        kwargs["retries"] = validate_retries(report, (*path, "retries"), present["retries"])
    return Upstream(name=name, targets=targets, **kwargs)


def _balancing(report: Report, path: Path, present: Mapping[str, Any], targets: tuple[Target, ...]) -> dict[str, Any]:
    """`balance` and `hash_key`, checked against each other and against the target weights."""
    out: dict[str, Any] = {}
    balance: Balance | None = None
    if "balance" in present:
        balance = report.check((*path, "balance"), present["balance"], validate_balance, None)
        if balance is None:
            return out
        out["balance"] = balance
    if "hash_key" in present:
        key = report.check((*path, "hash_key"), present["hash_key"], validate_hash_key, None)
        if balance != "hash":
            setting = f"balance is {balance}" if balance else "balance is not set, so it is weighted"
            report.error((*path, "hash_key"), f"hash_key is only used with balance: hash ({setting})", at_key=True)
        elif key is not None:
            out["hash_key"] = key
    elif balance == "hash":
        out["hash_key"] = HashKey()
    if balance == "round_robin":
        for index, target in enumerate(targets):
            if target.weight != 1:
                report.error(
                    (*path, "balance"),
                    f"round_robin ignores weights, but targets[{index}] has weight {target.weight}: "
                    "use balance: weighted",
                )
                break
    return out


def validate_health(report: Report, path: Path, value: Any) -> HealthCheck | None:
    validators: dict[str, Callable[[Any], Any]] = {
        "path": validate_probe_path,
        "interval": validate_positive_duration,
        "timeout": validate_positive_duration,
        "unhealthy_after": int_between(1, MAX_THRESHOLD),
        "healthy_after": int_between(1, MAX_THRESHOLD),
        "expect": validate_status_ranges,
        "jitter": validate_duration,
    }
    present = section(report, path, value, validators, required=("path",))
    if present is None:
        return None
    kwargs = fields(report, path, present, validators)
    interval = kwargs.get("interval", HealthCheck("/").interval)
    if "jitter" not in kwargs:
        kwargs["jitter"] = interval / 10
    elif kwargs["jitter"] >= interval:
        detail = f"({_seconds(interval)}), got {present['jitter']!r}"
        report.error((*path, "jitter"), f"must be shorter than the interval {detail}")
        kwargs["jitter"] = interval / 10
    if "path" not in kwargs:
        return None
    return HealthCheck(**kwargs)


def validate_outlier(report: Report, path: Path, value: Any) -> Outlier | None:
    """`outlier`: a mapping (missing keys take the defaults, 5 consecutive failures ejecting for
    30 s, at most 50% of the targets), or `off` for no outlier detection at all, for users who
    run their own health logic. A bare `off` is YAML 1.1's false: both mean off."""
    if value is False or value == "off":
        return None
    if not isinstance(value, dict):
        hint = suggest(value, ("off",)) if isinstance(value, str) else ""
        report.error(path, f"expected a mapping or off, got {shown(value)}{hint}")
        return Outlier()
    validators: dict[str, Callable[[Any], Any]] = {
        "consecutive_failures": int_between(1, 1000),
        "eject_for": validate_positive_duration,
        "max_ejected": validate_percent,
    }
    present = section(report, path, value, validators)
    return Outlier(**fields(report, path, present or {}, validators))


def validate_retries(report: Report, path: Path, value: Any) -> Retries:
    validators: dict[str, Callable[[Any], Any]] = {
        "attempts": int_between(1, MAX_ATTEMPTS),
        "budget": validate_percent,
        "per_try_timeout": validate_positive_duration,
        "total_timeout": validate_positive_duration,
    }
    present = section(report, path, value, [*validators, "on"])
    if present is None:
        return Retries()
    kwargs = fields(report, path, present, validators)
    if "on" in present:
        kwargs["on"] = _retry_conditions(report, (*path, "on"), present["on"])
    return Retries(**kwargs)


def _retry_conditions(report: Report, path: Path, value: Any) -> tuple[RetryOn, ...]:
    conditions: list[RetryOn] = []
    for index, item in enumerate(sequence(report, path, value)):
        condition = report.check((*path, index), item, validate_retry_condition, None)
        if condition is None:
            continue
        if condition in conditions:
            report.error((*path, index), f"{condition!r} is listed twice")
            continue
        conditions.append(condition)
    return tuple(conditions)


def validate_targets(report: Report, path: Path, value: Any) -> tuple[Target, ...]:
    targets: list[Target] = []
    seen: dict[Address, int] = {}
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        item_path = (*path, index)
        target = validate_target(report, item_path, item)
        if target is None:
            continue
        if target.address in seen:
            report.error(item_path, f"duplicate target {target.address} (also targets[{seen[target.address]}])")
            continue
        seen[target.address] = index
        targets.append(target)
    return tuple(targets)


def validate_target(report: Report, path: Path, value: Any) -> Target | None:
    """`"HOST:PORT"` or `{address: "HOST:PORT", weight: N}`."""
    if isinstance(value, str):
        address = report.check(path, value, validate_address, None)
        return Target(address) if address is not None else None
    if not isinstance(value, dict):
        report.error(path, f'expected "HOST:PORT" or {{address: "HOST:PORT", weight: N}}, got {kind_of(value)}')
        return None
    present = section(report, path, value, ("address", "weight"), required=("address",))
    if present is None or "address" not in present:
        return None
    address = report.check((*path, "address"), present["address"], validate_address, None)
    kwargs = fields(report, path, present, {"weight": int_between(1, MAX_WEIGHT)})
    return Target(address, **kwargs) if address is not None else None


def validate_queue(report: Report, path: Path, value: Any) -> ConnectionQueue:
    validators = {"size": int_between(0), "timeout": validate_positive_duration}
    present = section(report, path, value, validators)
    return ConnectionQueue(**fields(report, path, present or {}, validators))


def validate_timeouts(report: Report, path: Path, value: Any) -> Timeouts:
    validators = {"connect": validate_positive_duration, "read": validate_positive_duration}
    present = section(report, path, value, validators)
    return Timeouts(**fields(report, path, present or {}, validators))


# ---------------------------------------------------------------------------------------------
# Leaf validators


def validate_host_header(value: Any) -> str:
    """A Host header value to send upstream: `name`, `name:port` or `[IPv6]:port`."""
    text = validate_string(value)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        validate_host(host)
        port = rest[1:] if rest.startswith(":") else None
        if ":" not in host or (rest and port is None):
            raise ValueError(f"{text!r} is not a valid Host header")
    else:
        host, sep, port_text = text.partition(":")
        validate_host(host)
        port = port_text if sep else None
    if port is not None and not is_port(port):
        raise ValueError(f"{text!r} has an invalid port")
    return text


def validate_balance(value: Any) -> Balance:
    if value not in BALANCES:
        suggestion = suggest(value, BALANCES) if isinstance(value, str) else ""
        raise ValueError(f"expected one of {', '.join(BALANCES)}, got {shown(value)}{suggestion}")
    return value  # type: ignore[no-any-return]


def validate_hash_key(value: Any) -> HashKey:
    """`ip`, `path`, `header:NAME` (any header, stored lower-case) or `cookie:NAME`."""
    hint = f"expected one of {', '.join(HASH_KEYS)}, got {shown(value)}"
    if not isinstance(value, str):
        raise ValueError(hint)
    if value in ("ip", "path"):
        return HashKey(value)  # type: ignore[arg-type]
    kind, sep, name = value.partition(":")
    if not sep or kind not in ("header", "cookie"):
        raise ValueError(hint)
    if not TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid {kind} name")
    return HashKey(kind, name.lower() if kind == "header" else name)  # type: ignore[arg-type]


def validate_probe_path(value: Any) -> str:
    """The request target of a health probe: an origin-form path, optionally with a query."""
    text = validate_string(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/', got {text!r}")
    bad = next((c for c in text if not 0x21 <= ord(c) <= 0x7E or c == "#"), None)
    if bad is not None:
        raise ValueError(f"must be visible ASCII without spaces or '#', found {bad!r} (percent-encode it)")
    return text


def validate_status_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """A status (`200`), a range (`"200-399"`), or a non-empty list of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must not be empty")
    ranges = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, str) and re.fullmatch(r"[0-9]{3}-[0-9]{3}", item):
            low, high = int(item[:3]), int(item[4:])
        else:
            raise ValueError(
                f'expected a status such as 200, a range such as "200-399", or a list of them, got {shown(item)}'
            )
        if not 100 <= low <= high <= 599:
            raise ValueError(f"statuses run from 100 to 599, low to high, got {item!r}")
        ranges.append((low, high))
    return tuple(ranges)


def validate_retry_condition(value: Any) -> RetryOn:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 400 <= value <= 599:
            raise ValueError(f"a status to retry on must be from 400 to 599, got {value}")
        return value
    if value in RETRY_CONDITIONS:
        return value  # type: ignore[no-any-return]
    hint = ""
    if isinstance(value, str) and value.isdigit():
        hint = f" (write {value} without quotes)"
    elif isinstance(value, str):
        hint = suggest(value, RETRY_CONDITIONS)
    raise ValueError(f"expected {', '.join(RETRY_CONDITIONS)} or a status from 400 to 599, got {shown(value)}{hint}")


def _seconds(value: float) -> str:
    return f"{value:g}s"
