"""The cache's freshness calculation (`fastgw._proxy.cache_freshness`, cachepolicy.pyx) against a
plain-Python model of RFC 9111 §4.2 written here from the RFC's text, on responses hypothesis
draws: Cache-Control directives (valid, invalid, quoted, repeated), Date, Expires and Age in every
HTTP-date format or broken, and the request's round trip. Also the HTTP-date parser against
`time.strptime`, the Cache-Control parser, and the Cache-Status values against the RFC 8941
grammar they must follow.

The interpretation choices the RFC leaves open are the ones docs/caching.md states (and
cachepolicy.pyx's header lists): first occurrence of a repeated directive; invalid max-age or
s-maxage = stale; invalid Expires = in the past; missing or invalid Date = the receipt time;
invalid Age ignored; delta-seconds capped at 2**31."""
from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from fastgw._proxy import cache_control, cache_freshness, cache_status, http_date, parse_date, sf_item

# ---- the model ---------------------------------------------------------------------------------

CAP = 2**31
TTL_STATUSES = {200, 203, 300, 301, 308}
FIFTY_YEARS = 50 * 31556952


def model_delta(text: str | None, quoted: bool = True) -> int | None:
    """delta-seconds (RFC 9111 §1.2.2), None when invalid; a directive's argument may also be
    given as a quoted-string (§5.2), a header's (Age) may not."""
    if text is None:
        return None
    if quoted and len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text or not text.isdigit() or not text.isascii():
        return None
    return min(int(text), CAP)


def model_directives(lines: list[str]) -> dict[str, str | None]:
    """name -> argument (None without one) of the first occurrence of each directive."""
    out: dict[str, str | None] = {}
    for line in lines:
        for part in re.findall(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+', line):
            name, eq, arg = part.strip(" \t").partition("=")
            name = name.strip(" \t").lower()
            if name and name not in out:
                out[name] = arg.strip(" \t") if eq else None
    return out


def model_date(text: str | None, now: float) -> float | None:
    """An HTTP-date in any of its three formats (RFC 9110 §5.6.7), as seconds; None otherwise."""
    if text is None:
        return None
    text = text.strip(" \t")
    # The grammar is case-sensitive (strptime is not): the shape is checked first.
    day, long_day, month = "|".join(DAYS), "|".join(LONG_DAYS), "|".join(MONTHS)
    shapes = (
        (rf"(?:{day}), \d\d (?:{month}) \d{{4}} \d\d:\d\d:\d\d GMT", "%a, %d %b %Y %H:%M:%S GMT", False),
        (rf"(?:{long_day}), \d\d-(?:{month})-\d\d \d\d:\d\d:\d\d GMT", "%A, %d-%b-%y %H:%M:%S GMT", True),
        (rf"(?:{day}) (?:{month}) [ \d]\d \d\d:\d\d:\d\d \d{{4}}", "%a %b %d %H:%M:%S %Y", False),
    )
    for shape, fmt, two_digit in shapes:
        if not re.fullmatch(shape, text):
            continue
        try:
            parsed = time.strptime(text, fmt)
        except ValueError:
            continue
        stamp = calendar.timegm(parsed)
        if two_digit:
            # RFC 9110: more than 50 years ahead means the century before
            year = datetime.fromtimestamp(now, UTC).year
            full = year // 100 * 100 + parsed.tm_year % 100
            stamp = calendar.timegm((full, *parsed[1:6]))
            if stamp > now + FIFTY_YEARS:
                stamp = calendar.timegm((full - 100, *parsed[1:6]))
        return float(stamp)
    return None


def model_freshness(headers: list[tuple[str, str]], request_time: float, response_time: float, ttl: float | None,
                    status: int) -> tuple[float | None, float]:
    def first(name: str) -> str | None:
        return next((v for n, v in headers if n.lower() == name), None)

    cc = model_directives([v for n, v in headers if n.lower() == "cache-control"])
    date = model_date(first("date"), response_time)
    date_value = date if date is not None else response_time
    # §4.2.1: a shared cache takes s-maxage, then max-age, then Expires - Date
    if "s-maxage" in cc:
        lifetime: float | None = model_delta(cc["s-maxage"]) or 0
    elif "max-age" in cc:
        lifetime = model_delta(cc["max-age"]) or 0
    elif first("expires") is not None:
        expires = model_date(first("expires"), response_time)
        lifetime = max(0.0, expires - date_value) if expires is not None else 0
    elif ttl is not None and status in TTL_STATUSES:
        lifetime = ttl
    else:
        lifetime = None
    # §4.2.3
    age_line = first("age")
    age_value = model_delta(age_line.split(",")[0].strip(" \t"), quoted=False) if age_line is not None else None
    apparent_age = max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (age_value or 0) + response_delay
    return lifetime, max(apparent_age, corrected_age_value)


# ---- strategies -----------------------------------------------------------------------------------

BASE = 1_700_000_000
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fmt_date(stamp: int, form: int) -> str:
    d = datetime.fromtimestamp(stamp, UTC)
    hms = f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if form == 0:
        return f"{DAYS[d.weekday()]}, {d.day:02d} {MONTHS[d.month - 1]} {d.year} {hms} GMT"
    if form == 1:
        return f"{LONG_DAYS[d.weekday()]}, {d.day:02d}-{MONTHS[d.month - 1]}-{d.year % 100:02d} {hms} GMT"
    return f"{DAYS[d.weekday()]} {MONTHS[d.month - 1]} {d.day:2d} {hms} {d.year}"


dates = st.one_of(
    st.builds(fmt_date, st.integers(BASE - 10**6, BASE + 10**6), st.integers(0, 2)),
    st.sampled_from(["0", "-1", "", "yesterday", "Sun, 06 Nov 1994 08:49:37", "Sun, 31 Feb 2023 08:00:00 GMT",
                     "sun, 06 nov 1994 08:49:37 gmt", "Sun, 06 Nov 1994 25:49:37 GMT"]),
)
deltas = st.one_of(st.integers(0, 10**6).map(str), st.integers(0, 100).map(lambda n: f'"{n}"'),
                   st.sampled_from(["", "-5", "1.5", "abc", "99999999999999999999", "0x10"]))
directive = st.one_of(
    st.builds(lambda name, d: f"{name}={d}", st.sampled_from(["max-age", "s-maxage", "MAX-AGE", "Max-Age"]), deltas),
    st.sampled_from(["public", "private", "no-cache", "no-store", "must-revalidate", "proxy-revalidate",
                     'no-cache="Set-Cookie"', "immutable", "stale-if-error=60", "max-age", "s-maxage"]),
)
cc_lines = st.lists(st.lists(directive, min_size=1, max_size=4).map(lambda ds: ", ".join(ds)), max_size=2)


@st.composite
def responses(draw: st.DrawFn) -> tuple[list[tuple[str, str]], float, float, float | None, int]:
    response_time = BASE + draw(st.integers(-1000, 1000)) + draw(st.sampled_from([0.0, 0.25, 0.5]))
    request_time = response_time - draw(st.sampled_from([0.0, 0.01, 1.5, 30.0]))
    headers: list[tuple[str, str]] = [("Cache-Control", line) for line in draw(cc_lines)]
    for name, values in (
        ("Date", dates),
        ("Expires", dates),
        ("Age", st.one_of(deltas, st.builds(lambda a, b: f"{a}, {b}", deltas, deltas))),
    ):
        for _ in range(draw(st.integers(0, 2))):
            headers.append((draw(st.sampled_from([name, name.lower(), name.upper()])), draw(values)))
    headers = draw(st.permutations(headers))
    ttl = draw(st.one_of(st.none(), st.sampled_from([0.0, 30.0, 3600.0])))
    status = draw(st.sampled_from([200, 203, 204, 301, 302, 404, 500]))
    return headers, request_time, response_time, ttl, status


# ---- the properties ---------------------------------------------------------------------------


@given(responses(), st.floats(0, 10**6))
@example(([("Cache-Control", "max-age=60"), ("Age", "100")], BASE - 1.0, float(BASE), None, 200), 0.0)
@example(([("Expires", fmt_date(BASE + 100, 0)), ("Date", fmt_date(BASE - 50, 2))], BASE, BASE, None, 200), 10.0)
@example(([("Cache-Control", "max-age=abc"), ("Expires", fmt_date(BASE + 100, 0))], BASE, BASE, 30.0, 200), 0.0)
@example(([("Expires", "0")], BASE, BASE, 30.0, 200), 0.0)
@example(([("Cache-Control", "s-maxage=10, max-age=100")], BASE, BASE, None, 200), 5.0)
@example(([("Cache-Control", "max-age=99999999999999")], BASE, BASE, None, 200), 0.0)
def test_freshness_matches_the_rfc_model(response: tuple, resident: float) -> None:
    headers, request_time, response_time, ttl, status = response
    raw = [(n.encode(), v.encode()) for n, v in headers]
    lifetime, age = cache_freshness(raw, request_time, response_time, ttl, status)
    want_lifetime, want_age = model_freshness(headers, request_time, response_time, ttl, status)
    assert (lifetime is None) == (want_lifetime is None), (lifetime, want_lifetime)
    if lifetime is not None and want_lifetime is not None:
        assert abs(lifetime - want_lifetime) < 1e-6
        # §4.2: fresh iff the lifetime exceeds the current age (initial age + resident time)
        assert (lifetime > age + resident) == (want_lifetime > want_age + resident) or \
            abs(want_lifetime - want_age - resident) < 1e-6
    assert abs(age - want_age) < 1e-6


@given(st.integers(-(10**9), 4 * 10**9), st.integers(0, 2))
def test_http_dates_in_every_format(stamp: int, form: int) -> None:
    text = fmt_date(stamp, form)
    now = BASE  # a two-digit year is read relative to now
    assert parse_date(text.encode(), now) == model_date(text, now)
    if form != 1:
        assert parse_date(text.encode(), now) == stamp


@given(st.text(alphabet="abcdefgSunMonNov0123456789:, -GMT", max_size=40))
def test_http_date_garbage(text: str) -> None:
    if model_date(text, BASE) is None:
        assert parse_date(text.encode(), BASE) is None
    else:
        assert parse_date(text.encode(), BASE) == model_date(text, BASE)


def test_http_date_roundtrip_and_two_digit_years() -> None:
    for stamp in (0, 784111777, BASE, 2**31 + 5):
        assert parse_date(http_date(stamp)) == stamp
    now = calendar.timegm((2026, 1, 1, 0, 0, 0))
    assert parse_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now) == 784111777
    assert parse_date(b"Friday, 01-Jan-60 00:00:00 GMT", now) == calendar.timegm((2060, 1, 1, 0, 0, 0))
    assert parse_date(b"Tuesday, 01-Jan-77 00:00:00 GMT", now) == calendar.timegm((1977, 1, 1, 0, 0, 0))
    assert parse_date(b"Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_date(b"  Sun, 06 Nov 1994 08:49:37 GMT ") == 784111777
    assert parse_date(b"Sun, 29 Feb 2023 08:49:37 GMT") is None


@given(cc_lines)
def test_cache_control_directives_match_the_model(lines: list[str]) -> None:
    got = cache_control(*(line.encode() for line in lines))
    model = model_directives(lines)
    for name in ("max-age", "s-maxage"):
        if name not in model:
            assert got[name] is None
        else:
            delta = model_delta(model[name])
            assert got[name] == (delta if delta is not None else "invalid")
    for name in ("public", "private", "no-cache", "no-store", "must-revalidate", "proxy-revalidate"):
        assert got[name] == (name in model)


def test_request_directives() -> None:
    got = cache_control(b'max-stale, min-fresh=5, only-if-cached, no-cache="a, b"', b"max-age=0")
    assert (got["max-stale"], got["min-fresh"], got["only-if-cached"], got["no-cache"], got["max-age"]) == (
        "any", 5, True, True, 0)
    assert cache_control(b"max-stale=30")["max-stale"] == 30


# RFC 8941 §3.1.2 (parameters), §3.3 (bare items) and §3.1 (a list of one item): what Cache-Status
# values are made of.
_KEY = r"[a-z*][a-z0-9_\-.*]*"
_TOKEN = r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"
_BARE = rf'(?:-?\d{{1,15}}|{_TOKEN}|"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|\?[01])'
SF_ITEM = re.compile(rf"{_TOKEN}(?:; ?{_KEY}(?:={_BARE})?)*")


@given(st.booleans(), st.sampled_from([None, "bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale"]),
       st.integers(0, 599), st.one_of(st.none(), st.integers(-(10**18), 10**18)), st.booleans(), st.booleans(),
       st.sampled_from([None, "no-store", "private", "stale-if-error", "too-large"]))
def test_cache_status_follows_the_structured_field_grammar(hit: bool, fwd: str | None, fwd_status: int,
                                                            ttl: int | None, stored: bool, collapsed: bool,
                                                            detail: str | None) -> None:
    value = cache_status(hit=hit, fwd=fwd, fwd_status=fwd_status, ttl=ttl, stored=stored, collapsed=collapsed,
                         detail=detail).decode()
    assert SF_ITEM.fullmatch(value), value
    assert value.startswith("fastgw") and (("; hit" in value) == hit)


def test_sf_item_refuses_what_the_grammar_does_not_allow() -> None:
    import pytest

    item = sf_item(b"fastgw", ((b"hit", True), (b"ttl", -5), (b"fwd", b"uri-miss")))
    assert item == b"fastgw; hit; ttl=-5; fwd=uri-miss"
    for bad in (((b"Hit", True),), ((b"ttl", 10**16),), ((b"fwd", b"has space"),), ((b"1x", True),)):
        with pytest.raises(ValueError):
            sf_item(b"fastgw", bad)
    with pytest.raises(ValueError):
        sf_item(b"fast gw")


def test_model_sanity() -> None:
    """The model itself, on the RFC's own example dates."""
    now = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))
    assert model_date("Sun, 06 Nov 1994 08:49:37 GMT", now) == 784111777.0
    assert model_date("Sunday, 06-Nov-94 08:49:37 GMT", now) == 784111777.0
    assert model_date("Sun Nov  6 08:49:37 1994", now) == 784111777.0
    assert model_freshness([("Date", fmt_date(int(now) - 10, 0)), ("Expires", fmt_date(int(now) + 50, 0))],
                           now, now, None, 200) == (60, 10)
    assert datetime.fromtimestamp(now, UTC) - timedelta(seconds=1) < datetime.fromtimestamp(now, UTC)
