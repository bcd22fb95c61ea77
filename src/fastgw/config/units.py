"""Parsers for the unit syntaxes of the config file: durations, sizes and rates.

They are strict on purpose: `16k`, `10 s` or `2sec` are refused with a hint rather than guessed,
because a silently misread timeout or body limit is worse than a config that fails to load.
Each parser raises ValueError with a message fit to show the user after the key path.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

from .yamlsrc import kind_of

__all__ = ["parse_duration", "parse_size", "parse_rate", "DURATION_UNITS", "SIZE_UNITS", "RATE_UNITS", "MAX_DURATION"]

DURATION_UNITS: dict[str, Fraction] = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
RATE_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 10**9

_NUMBER_UNIT = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]*)")
_RATE = re.compile(r"(\d+)/([A-Za-z]+)")
# nginx writes 16k / 10m; here those would be ambiguous (KiB or KB? minutes or MiB?).
_NGINX_SIZE_UNITS = {"k": "KiB", "m": "MiB", "g": "GiB"}


def parse_duration(value: object) -> float:
    """Seconds from `250ms`, `2s`, `1.5m`, `1h`, or a plain number of seconds (int, float or a
    numeric string). Negative, infinite and NaN values are refused, and so is anything longer than
    MAX_DURATION, which can only be a typo and would overflow timers; zero is allowed (callers that
    need a positive value check that themselves)."""
    hint = "expected a duration such as 250ms, 2s, 1m or 1h (or a number of seconds)"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{hint}, got {kind_of(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = Fraction(value)
        if seconds < 0:
            raise ValueError(f"a duration must be >= 0 seconds, got {value!r}")
    else:
        match = _NUMBER_UNIT.fullmatch(value)
        if match is None:
            raise ValueError(f"{hint}, got {value!r}")
        number, unit = match.groups()
        scale = DURATION_UNITS.get(unit or "s")
        if scale is None:
            known = ", ".join(DURATION_UNITS)
            raise ValueError(f"unknown duration unit {unit!r} in {value!r} (units: {known})")
        seconds = Fraction(number) * scale
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than the maximum of {MAX_DURATION} seconds")
    return float(seconds)


def parse_size(value: object) -> int:
    """Bytes from an integer or `512`, `512B`, `16KiB`, `10MiB`, `1GiB` (binary) or `16KB`,
    `10MB`, `1GB` (decimal). A fraction (`1.5KiB`) is accepted only when it is a whole number of
    bytes."""
    hint = "expected a size such as 512, 16KiB, 10MiB or 1GB"
    if isinstance(value, float):
        raise ValueError(f"a size is a whole number of bytes, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{hint}, got {kind_of(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must be >= 0 bytes, got {value}")
        return value
    match = _NUMBER_UNIT.fullmatch(value)
    if match is None:
        raise ValueError(f"{hint}, got {value!r}")
    number, unit = match.groups()
    scale = SIZE_UNITS.get(unit or "B")
    if scale is None:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}{_size_unit_hint(unit)}")
    size = Fraction(number) * scale
    if size.denominator != 1:
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)


def _size_unit_hint(unit: str) -> str:
    nginx = _NGINX_SIZE_UNITS.get(unit.lower())
    if nginx is not None:
        decimal = nginx.replace("i", "")
        return f" (write {nginx} for multiples of 1024 or {decimal} for multiples of 1000)"
    for known in SIZE_UNITS:
        if known.lower() == unit.lower():
            return f" (units are case-sensitive: write {known})"
    return " (units: " + ", ".join(SIZE_UNITS) + ")"


def parse_rate(value: object) -> tuple[int, float]:
    """`(count, per_seconds)` from `100/s`, `6000/m` or `10/h`; the count must be at least 1."""
    hint = "expected a rate such as 100/s, 6000/m or 10/h"
    if not isinstance(value, str):
        raise ValueError(f"{hint}, got {kind_of(value)}")
    match = _RATE.fullmatch(value)
    if match is None:
        raise ValueError(f"{hint}, got {value!r}")
    count, unit = int(match.group(1)), match.group(2)
    per = RATE_UNITS.get(unit)
    if per is None:
        raise ValueError(f"unknown rate unit {unit!r} in {value!r} (units: /s, /m, /h)")
    if count < 1:
        raise ValueError(f"a rate must allow at least 1 request, got {value!r}")
    return count, per
