"""Config of rate limits: `rate_limits`, `rate_limit_table` and the routes' `rate_limit`, as the
frozen model a valid file gives and the exact problem lines an invalid one gives."""
from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw.config import ConfigError, RateLimit, RateLimitTable, load

BASE = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert all(line.startswith(f"{path}:") for line in info.value.problems)
    return [line[len(path) + 1 :] for line in info.value.problems]


def with_limits(limits: str, route: str = "    rate_limit: [per_ip]\n") -> str:
    return BASE + "rate_limits:\n" + textwrap.indent(textwrap.dedent(limits), "  ") + (
        "routes:\n  - match: {prefix: /}\n    upstream: app\n" + route
    )


def test_limits_load_with_their_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, with_limits(
        """\
        per_ip: {rate: 100/s}
        slow: {rate: 90/m, key: route, enforce: false}
        per_user:
          rate: 6000/m
          burst: 50
          key: "header:X-User"
          scope: cluster
          redis: "redis://127.0.0.1:6379/0"
        """,
        "    rate_limit: [per_ip, per_user]\n  - match: {prefix: /b}\n    upstream: app\n    rate_limit: slow\n",
    )))
    assert config.rate_limits["per_ip"] == RateLimit(
        name="per_ip", rate=100.0, burst=100, rate_text="100/s", key="ip", line=6
    )
    slow = config.rate_limits["slow"]
    assert (slow.rate, slow.burst, slow.key, slow.enforce) == (1.5, 2, "route", False)  # burst: 1.5 rounded up
    user = config.rate_limits["per_user"]
    assert (user.rate, user.burst, user.key, user.scope) == (100.0, 50, "header:x-user", "cluster")
    assert (user.redis, user.on_redis_error, user.redis_timeout) == ("redis://127.0.0.1:6379/0", "open", 0.05)
    assert config.routes[0].rate_limit == ("per_ip", "per_user")
    assert config.routes[1].rate_limit == ("slow",)
    assert config.rate_limit_table == RateLimitTable(capacity=65536)


def test_burst_default_is_at_least_one(tmp_path: Path) -> None:
    config = load(write(tmp_path, with_limits("per_ip: {rate: 1/h}\n")))
    assert config.rate_limits["per_ip"].burst == 1


def test_identity_ignores_enforce_only(tmp_path: Path) -> None:
    base = RateLimit(name="a", rate=10.0, burst=10)
    assert base.identity == RateLimit(name="a", rate=10.0, burst=10, enforce=False).identity
    for changed in (
        RateLimit(name="b", rate=10.0, burst=10),
        RateLimit(name="a", rate=11.0, burst=10),
        RateLimit(name="a", rate=10.0, burst=11),
        RateLimit(name="a", rate=10.0, burst=10, key="route"),
    ):
        assert changed.identity != base.identity


def test_table_capacity(tmp_path: Path) -> None:
    config = load(write(tmp_path, with_limits("per_ip: {rate: 1/s}\n") + "rate_limit_table: {capacity: 1024}\n"))
    assert config.rate_limit_table.capacity == 1024


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("{burst: 5}", "6: rate_limits.per_ip.rate: required key is missing"),
        ("{rate: 100}", "6: rate_limits.per_ip.rate: expected a rate such as 100/s, 6000/m or 10/h, got integer"),
        ("{rate: 100/d}", "6: rate_limits.per_ip.rate: unknown rate unit 'd' in '100/d' (units: /s, /m, /h)"),
        ("{rate: 0/s}", "6: rate_limits.per_ip.rate: a rate must allow at least 1 request, got '0/s'"),
        ("{rate: 2000000000/s}", "6: rate_limits.per_ip.rate: '2000000000/s' is above the maximum of 1000000000/s"),
        ("{rate: 1/s, burst: 0}", "6: rate_limits.per_ip.burst: must be from 1 to 1000000000, got 0"),
        ("{rate: 1/s, burst: 2.5}", "6: rate_limits.per_ip.burst: expected an integer, got number 2.5"),
        ("{rate: 1/h, burst: 1000000000}",
         "6: rate_limits.per_ip.burst: burst / rate (1000000000 / 1/h) takes more than 73 years to refill"),
        ("{rate: 1/s, key: user}",
         "6: rate_limits.per_ip.key: expected one of ip, route, header:NAME, claim:NAME, consumer, got string 'user'"),
        ("{rate: 1/s, key: rout}", "6: rate_limits.per_ip.key: expected one of ip, route, header:NAME, claim:NAME,"
         " consumer, got string 'rout' (did you mean 'route'?)"),
        ("{rate: 1/s, key: 'header:X User'}", "6: rate_limits.per_ip.key: 'X User' is not a valid header name"),
        ("{rate: 1/s, key: 'cookie:sid'}", "6: rate_limits.per_ip.key: expected one of ip, route, header:NAME"),
        ("{rate: 1/s, key: 'claim:sub'}",
         "10: routes[0].rate_limit: rate limit 'per_ip' is keyed by claim:sub, which needs auth on the route"),
        ("{rate: 1/s, key: 'claim:'}", "6: rate_limits.per_ip.key: claim: needs a claim name, as in claim:sub"),
        ("{rate: 1/s, key: consumer}",
         "10: routes[0].rate_limit: rate limit 'per_ip' is keyed by consumer, which needs auth on the route"),
        ("{rate: 1/s, scope: global}",
         "6: rate_limits.per_ip.scope: expected one of local, cluster, got string 'global'"),
        ("{rate: 1/s, enforce: 'no'}", "6: rate_limits.per_ip.enforce: expected true or false, got string 'no'"),
        ("{rate: 1/s, brust: 3}", "6: rate_limits.per_ip.brust: unknown key 'brust' (did you mean 'burst'?)"),
        ("{rate: 1/s, redis: 'redis://127.0.0.1'}",
         "6: rate_limits.per_ip.redis: 'redis' only applies to scope: cluster"),
        ("{rate: 1/s, on_redis_error: open}",
         "6: rate_limits.per_ip.on_redis_error: 'on_redis_error' only applies to scope: cluster"),
        ("{rate: 1/s, scope: cluster}",
         "6: rate_limits.per_ip.redis: required key is missing (scope: cluster keeps its buckets in Redis)"),
        ("{rate: 2000000/s, scope: cluster, redis: 'redis://h'}",
         "6: rate_limits.per_ip.rate: a cluster limit may be at most 1000000/s, got '2000000/s'"),
        ("{rate: 1/s, scope: cluster, redis: 'http://h:1'}", "6: rate_limits.per_ip.redis: expected a URL such as"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://h:0/0'}",
         "6: rate_limits.per_ip.redis: port must be from 1 to 65535, got '0'"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://h:1/x'}",
         "6: rate_limits.per_ip.redis: the database is a number (redis://host:port/0), got 'x'"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://:1'}", "6: rate_limits.per_ip.redis: '' is not an IP address"),
        ("{rate: 1/s, scope: cluster, redis: 'unix://run.sock'}",
         "6: rate_limits.per_ip.redis: a unix URL needs an absolute socket path"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://h', on_redis_error: fail}",
         "6: rate_limits.per_ip.on_redis_error: expected one of open, closed, got string 'fail'"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://h', redis_timeout: 0s}",
         "6: rate_limits.per_ip.redis_timeout: must be longer than 0, got '0s'"),
        ("{rate: 1/s, scope: cluster, redis: 'redis://h', redis_timeout: 1m}",
         "6: rate_limits.per_ip.redis_timeout: must be at most 10s (requests never wait for Redis longer), got '1m'"),
        ("[]", "6: rate_limits.per_ip: expected a mapping, got list"),
    ],
)
def test_limit_problems(tmp_path: Path, limit: str, expected: str) -> None:
    found = problems(tmp_path, with_limits(f"per_ip: {limit}\n"))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_valid_cluster_urls(tmp_path: Path) -> None:
    for url in ("redis://10.0.0.1:6379/2", "rediss://user:pw@cache.internal:6380", "redis://[::1]:6379/0",
                "unix:///run/redis.sock"):
        text = with_limits(f"per_ip: {{rate: 1/s, scope: cluster, redis: '{url}', redis_timeout: 20ms}}\n")
        assert load(write(tmp_path, text)).rate_limits["per_ip"].redis == url


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("rate_limit: [per_ip, per_usr]",
         "11: routes[0].rate_limit[1]: unknown rate limit 'per_usr' (did you mean 'per_user'?)"),
        ("rate_limit: nope", "11: routes[0].rate_limit: unknown rate limit 'nope'; defined: per_ip, per_user"),
        ("rate_limit: [per_ip, per_ip]", "11: routes[0].rate_limit[1]: rate limit 'per_ip' is listed twice"),
        ("rate_limit: []", "11: routes[0].rate_limit: must not be empty (omit rate_limit for a route without limits)"),
        ("rate_limit: [7]", "11: routes[0].rate_limit[0]: expected a rate limit name, got integer 7"),
        ("rate_limt: per_ip", "11: routes[0].rate_limt: unknown key 'rate_limt' (did you mean 'rate_limit'?)"),
    ],
)
def test_route_problems(tmp_path: Path, route: str, expected: str) -> None:
    text = with_limits("per_ip: {rate: 1/s}\nper_user: {rate: 1/s, key: 'header:x-user'}\n", f"    {route}\n")
    assert problems(tmp_path, text) == [expected]


def test_route_naming_an_invalid_limit_is_not_also_dangling(tmp_path: Path) -> None:
    assert problems(tmp_path, with_limits("per_ip: {rate: fast}\n")) == [
        "6: rate_limits.per_ip.rate: expected a rate such as 100/s, 6000/m or 10/h, got 'fast'"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate_limits: []\n", "5: rate_limits: expected a mapping of rate limit names to limits, got list"),
        ("rate_limits: {'per ip': {rate: 1/s}}\n",
         "5: rate_limits[\"per ip\"]: rate limit name 'per ip' may only contain letters, digits, '_', '.' and '-'"),
        ("rate_limit_table: {capacity: 4}\n", "5: rate_limit_table.capacity: must be from 8 to 67108864, got 4"),
        ("rate_limit_table: {size: 4}\n", "5: rate_limit_table.size: unknown key 'size'"),
        ("rate_limit: [a]\n", "5: rate_limit: unknown key 'rate_limit' (did you mean 'rate_limits'?)"),
    ],
)
def test_top_level_problems(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, BASE + text)
    assert len(found) == 1 and found[0].startswith(expected), found


_FULL = yaml.safe_load(with_limits(
    """\
    per_ip: {rate: 100/s, burst: 200, key: ip, enforce: true}
    per_user: {rate: 10/s, key: "header:x-user", scope: cluster, redis: "redis://127.0.0.1:6379/0",
               on_redis_error: closed, redis_timeout: 50ms}
    """,
    "    rate_limit: [per_ip, per_user]\n",
) + "rate_limit_table: {capacity: 1024}\n")


def _paths(tree: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.sampled_from(["ip", "route", "header:", "claim:sub", "consumer", "cluster", "local", "1/s", "0/h",
                     "1000000000/s", "redis://", "unix://", "open", "closed", "50ms", "per_ip"]),
    st.lists(st.sampled_from(["per_ip", "per_user", "x", ""]), max_size=3),
    st.dictionaries(st.sampled_from(["rate", "burst", "key", "x"]), st.sampled_from(["1/s", 1, "ip"]), max_size=3),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([p for p in _paths(_FULL) if p and p[0] in ("rate_limits", "rate_limit_table", "routes")]),
       _VALUES)
def test_any_value_anywhere_loads_or_raises_config_error(
    tmp_path: Path, where: tuple[object, ...], value: object
) -> None:
    tree = copy.deepcopy(_FULL)
    parent = tree
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(tree))
    try:
        load(str(path))
    except ConfigError as exc:
        for line in exc.problems:
            assert re.fullmatch(rf"{re.escape(str(path))}:\d+: .+?: .+", line), line
