"""Unit syntaxes: what is accepted, to which value, and that everything else is refused with a
message that helps."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastgw.config.units import DURATION_UNITS, RATE_UNITS, SIZE_UNITS, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0.5m", 30.0),
        ("0s", 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (30, 30.0),
        (0, 0.0),
        (1.25, 1.25),
        ("1000000000", 1e9),
    ],
)
def test_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10 s", "expected a duration"),
        ("2sec", "unknown duration unit 'sec'"),
        ("1d", "unknown duration unit 'd'"),
        ("1M", "unknown duration unit 'M'"),
        ("-1s", "expected a duration"),
        ("1m30s", "expected a duration"),
        ("", "expected a duration"),
        ("s", "expected a duration"),
        (".5s", "expected a duration"),
        (-1, ">= 0"),
        (-0.5, ">= 0"),
        ("1000000001", "longer than the maximum of 1000000000 seconds"),
        ("1" * 400 + "h", "longer than the maximum"),
        (10**400, "longer than the maximum"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        (True, "got boolean"),
        (None, "got null"),
        ([1], "got list"),
    ],
)
def test_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (512, 512),
        (0, 0),
        ("512", 512),
        ("512B", 512),
        ("16KiB", 16 * 1024),
        ("10MiB", 10 * 1024 * 1024),
        ("1GiB", 1024**3),
        ("16KB", 16_000),
        ("10MB", 10_000_000),
        ("1GB", 10**9),
        ("1.5KiB", 1536),
        ("0.5MB", 500_000),
    ],
)
def test_size_accepts(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("16k", "write KiB for multiples of 1024 or KB for multiples of 1000"),
        ("10M", "write MiB"),
        ("16kib", "units are case-sensitive: write KiB"),
        ("16kb", "units are case-sensitive: write KB"),
        ("3TB", "unknown size unit 'TB'"),
        ("1.0001KiB", "not a whole number of bytes"),
        ("0.5", "not a whole number of bytes"),
        ("16 KiB", "expected a size"),
        ("-1", "expected a size"),
        (-1, ">= 0"),
        (1.5, "whole number of bytes"),
        (True, "got boolean"),
        (None, "got null"),
        ({}, "got mapping"),
    ],
)
def test_size_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/s", (100, 1.0)), ("6000/m", (6000, 60.0)), ("10/h", (10, 3600.0)), ("1/s", (1, 1.0))],
)
def test_rate_accepts(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0/s", "at least 1"),
        ("100/d", "unknown rate unit 'd'"),
        ("100/sec", "unknown rate unit 'sec'"),
        ("100 / s", "expected a rate"),
        ("100", "expected a rate"),
        ("1.5/s", "expected a rate"),
        (100, "got integer"),
    ],
)
def test_rate_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(value)
    assert fragment in str(info.value)


@given(st.integers(min_value=0, max_value=10**5), st.sampled_from(sorted(DURATION_UNITS)))
def test_duration_round_trip(count: int, unit: str) -> None:
    assert parse_duration(f"{count}{unit}") == pytest.approx(count * float(DURATION_UNITS[unit]))


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(sorted(SIZE_UNITS)))
def test_size_round_trip(count: int, unit: str) -> None:
    assert parse_size(f"{count}{unit}") == count * SIZE_UNITS[unit]


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(sorted(RATE_UNITS)))
def test_rate_round_trip(count: int, unit: str) -> None:
    assert parse_rate(f"{count}/{unit}") == (count, RATE_UNITS[unit])
