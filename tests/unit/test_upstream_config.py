"""Config of traffic management (`balance`, `hash_key`, `health`, `outlier`, `retries`): the model
a valid upstream produces, and the exact `LINE: key.path: message` of each mistake."""
from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw.config import ConfigError, HashKey, HealthCheck, Outlier, Retries, load
from fastgw.config.model import ConnectionQueue

HEAD = """\
listen: [{address: "127.0.0.1:8080"}]
routes: [{match: {prefix: /}, upstream: app}]
upstreams:
  app:
    targets: ["127.0.0.1:9001", "127.0.0.1:9002"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def upstream_with(tmp_path: Path, body: str) -> object:
    return load(write(tmp_path, HEAD + textwrap.indent(textwrap.dedent(body), "    "))).upstreams["app"]


def problems_with(tmp_path: Path, body: str) -> list[str]:
    path = write(tmp_path, HEAD + textwrap.indent(textwrap.dedent(body), "    "))
    with pytest.raises(ConfigError) as info:
        load(path)
    return [line[len(path) + 1:] for line in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    up = upstream_with(tmp_path, "")
    assert up.balance == "weighted"  # type: ignore[attr-defined]
    assert up.hash_key is None and up.health is None  # type: ignore[attr-defined]
    assert up.outlier == Outlier(consecutive_failures=5, eject_for=30.0, max_ejected=0.5)  # type: ignore[attr-defined]
    assert up.retries == Retries(attempts=2, on=("connect_error",), budget=0.2)  # type: ignore[attr-defined]


def test_everything_set(tmp_path: Path) -> None:
    up = upstream_with(
        tmp_path,
        """\
        balance: hash
        hash_key: header:X-User-Id
        health: {path: "/healthz?deep=1", interval: 2s, timeout: 500ms, unhealthy_after: 3, healthy_after: 2,
                 expect: [200, "300-302"], jitter: 100ms}
        outlier: {consecutive_failures: 3, eject_for: 10s, max_ejected: 34%}
        retries: {attempts: 3, on: [connect_error, reset, timeout, 502, 503], budget: 12.5%,
                  per_try_timeout: 1s, total_timeout: 5s}
        """,
    )
    assert up.hash_key == HashKey("header", "x-user-id")  # type: ignore[attr-defined]
    assert up.health == HealthCheck(  # type: ignore[attr-defined]
        "/healthz?deep=1", 2.0, 0.5, 3, 2, ((200, 200), (300, 302)), 0.1
    )
    assert up.outlier == Outlier(3, 10.0, 0.34)  # type: ignore[attr-defined]
    assert up.retries == Retries(3, ("connect_error", "reset", "timeout", 502, 503), 0.125, 1.0, 5.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("balance", ["weighted", "round_robin", "least_conn", "p2c_ewma", "hash"])
def test_every_balance(tmp_path: Path, balance: str) -> None:
    assert upstream_with(tmp_path, f"balance: {balance}\n").balance == balance  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("written", "key"),
    [("ip", HashKey("ip")), ("path", HashKey("path")), ("header:X-Api-Key", HashKey("header", "x-api-key")),
     ("cookie:SessionID", HashKey("cookie", "SessionID"))],
)
def test_hash_keys(tmp_path: Path, written: str, key: HashKey) -> None:
    assert upstream_with(tmp_path, f"balance: hash\nhash_key: '{written}'\n").hash_key == key  # type: ignore[attr-defined]


def test_hash_defaults_to_the_client_ip(tmp_path: Path) -> None:
    assert upstream_with(tmp_path, "balance: hash\n").hash_key == HashKey("ip")  # type: ignore[attr-defined]


def test_health_jitter_defaults_to_a_tenth_of_the_interval(tmp_path: Path) -> None:
    health = upstream_with(tmp_path, "health: {path: /h, interval: 3s}\n").health  # type: ignore[attr-defined]
    assert (health.interval, health.jitter, health.timeout, health.expect) == (3.0, 0.3, 1.0, ((200, 399),))


def test_retries_on_is_a_key_not_a_boolean(tmp_path: Path) -> None:
    """YAML 1.1 reads a bare `on` as true; as a key it stays `on`."""
    retries = upstream_with(tmp_path, "retries:\n  on: [reset]\n").retries  # type: ignore[attr-defined]
    assert retries.on == ("reset",)


@pytest.mark.parametrize("written", ["off", "Off", "false", "'off'"])
def test_outlier_may_be_switched_off(tmp_path: Path, written: str) -> None:
    """Issue 9, item 9: for users who run their own health logic; a bare `off` is YAML 1.1's
    false, and both mean no outlier detection (as Envoy without an outlier_detection block)."""
    assert upstream_with(tmp_path, f"outlier: {written}\n").outlier is None  # type: ignore[attr-defined]


def test_outlier_written_empty_is_the_default(tmp_path: Path) -> None:
    assert upstream_with(tmp_path, "outlier: {}\n").outlier == Outlier()  # type: ignore[attr-defined]
    assert Outlier() == Outlier(consecutive_failures=5, eject_for=30.0, max_ejected=0.5)


def test_connection_limits(tmp_path: Path) -> None:
    up: Any = upstream_with(tmp_path, "")
    assert (up.max_connections, up.max_connecting, up.queue) == (0, 32, ConnectionQueue(size=0, timeout=None))
    up = upstream_with(tmp_path, "max_connections: 200\nmax_connecting: 8\nqueue: {size: 1000, timeout: 2s}\n")
    assert (up.max_connections, up.max_connecting, up.queue) == (200, 8, ConnectionQueue(size=1000, timeout=2.0))


def test_retries_may_be_switched_off(tmp_path: Path) -> None:
    assert upstream_with(tmp_path, "retries: {on: []}\n").retries.on == ()  # type: ignore[attr-defined]
    assert upstream_with(tmp_path, "retries: {attempts: 1}\n").retries.attempts == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("balance: round_robn\n",
         "6: upstreams.app.balance: expected one of weighted, round_robin, least_conn, p2c_ewma, hash, "
         "got string 'round_robn' (did you mean 'round_robin'?)"),
        ("balance: 3\n", "6: upstreams.app.balance: expected one of weighted, round_robin, least_conn, p2c_ewma, "
         "hash, got integer 3"),
        ("hash_key: ip\n",
         "6: upstreams.app.hash_key: hash_key is only used with balance: hash (balance is not set, so it is weighted)"),
        ("balance: least_conn\nhash_key: ip\n",
         "7: upstreams.app.hash_key: hash_key is only used with balance: hash (balance is least_conn)"),
        ("balance: hash\nhash_key: query\n",
         "7: upstreams.app.hash_key: expected one of ip, path, header:NAME, cookie:NAME, got string 'query'"),
        ("balance: hash\nhash_key: 'header:'\n", "7: upstreams.app.hash_key: '' is not a valid header name"),
        ("balance: hash\nhash_key: 'cookie:a b'\n", "7: upstreams.app.hash_key: 'a b' is not a valid cookie name"),
        ("health: {interval: 1s}\n", "6: upstreams.app.health.path: required key is missing"),
        ("health: /healthz\n", "6: upstreams.app.health: expected a mapping, got string"),
        ("health: {path: healthz}\n", "6: upstreams.app.health.path: must start with '/', got 'healthz'"),
        ("health: {path: '/a b'}\n",
         "6: upstreams.app.health.path: must be visible ASCII without spaces or '#', found ' ' (percent-encode it)"),
        ("health: {path: /h, interval: 0s}\n", "6: upstreams.app.health.interval: must be longer than 0, got '0s'"),
        ("health: {path: /h, unhealthy_after: 0}\n",
         "6: upstreams.app.health.unhealthy_after: must be from 1 to 100, got 0"),
        ("health: {path: /h, healthy_after: two}\n",
         "6: upstreams.app.health.healthy_after: expected an integer, got string 'two'"),
        ("health: {path: /h, expect: []}\n", "6: upstreams.app.health.expect: must not be empty"),
        ("health: {path: /h, expect: '399-200'}\n",
         "6: upstreams.app.health.expect: statuses run from 100 to 599, low to high, got '399-200'"),
        ("health: {path: /h, expect: [2xx]}\n",
         "6: upstreams.app.health.expect: expected a status such as 200, a range such as \"200-399\", or a list "
         "of them, got string '2xx'"),
        ("health: {path: /h, interval: 1s, jitter: 1s}\n",
         "6: upstreams.app.health.jitter: must be shorter than the interval (1s), got '1s'"),
        ("health: {path: /h, tiemout: 1s}\n",
         "6: upstreams.app.health.tiemout: unknown key 'tiemout' (did you mean 'timeout'?)"),
        ("outlier: {consecutive_failures: 0}\n",
         "6: upstreams.app.outlier.consecutive_failures: must be from 1 to 1000, got 0"),
        ("outlier: on\n", "6: upstreams.app.outlier: expected a mapping or off, got true"),
        ("outlier: disabled\n", "6: upstreams.app.outlier: expected a mapping or off, got string 'disabled'"),
        ("outlier: of\n",
         "6: upstreams.app.outlier: expected a mapping or off, got string 'of' (did you mean 'off'?)"),
        ("outlier: null\n", "6: upstreams.app.outlier: expected a mapping or off, got null"),
        ("outlier: [off]\n", "6: upstreams.app.outlier: expected a mapping or off, got list"),
        ("outlier: {eject_for: -1s}\n",
         "6: upstreams.app.outlier.eject_for: expected a duration such as 250ms, 2s, 1m or 1h (or a number of "
         "seconds), got '-1s'"),
        ("outlier: {max_ejected: 0.5}\n",
         "6: upstreams.app.outlier.max_ejected: write a percentage such as 50% (a bare number is ambiguous), "
         "got number 0.5"),
        ("outlier: {max_ejected: 150%}\n", "6: upstreams.app.outlier.max_ejected: must be from 0% to 100%, got 150%"),
        ("outlier: {max_ejected: half}\n",
         "6: upstreams.app.outlier.max_ejected: expected a percentage such as 50%, got string 'half'"),
        ("retries: {attempts: 0}\n", "6: upstreams.app.retries.attempts: must be from 1 to 10, got 0"),
        ("retries: {on: connect_error}\n", "6: upstreams.app.retries.on: expected a list, got string"),
        ("retries: {on: [rset]}\n",
         "6: upstreams.app.retries.on[0]: expected connect_error, reset, timeout or a status from 400 to 599, "
         "got string 'rset' (did you mean 'reset'?)"),
        ("retries: {on: ['503']}\n",
         "6: upstreams.app.retries.on[0]: expected connect_error, reset, timeout or a status from 400 to 599, "
         "got string '503' (write 503 without quotes)"),
        ("retries: {on: [200]}\n",
         "6: upstreams.app.retries.on[0]: a status to retry on must be from 400 to 599, got 200"),
        ("retries: {on: [reset, reset]}\n", "6: upstreams.app.retries.on[1]: 'reset' is listed twice"),
        ("retries: {budget: 20}\n",
         "6: upstreams.app.retries.budget: write a percentage such as 50% (a bare number is ambiguous), "
         "got integer 20"),
        ("retries: {per_try_timeout: 0}\n", "6: upstreams.app.retries.per_try_timeout: must be longer than 0, got 0"),
        ("retries: {total: 5s}\n", "6: upstreams.app.retries.total: unknown key 'total'"),
        ("retries: {yes: 1}\n", "6: upstreams.app.retries.yes: unknown key 'yes'"),
        ("max_connections: -1\n", "6: upstreams.app.max_connections: must be at least 0, got -1"),
        ("max_connecting: 0\n", "6: upstreams.app.max_connecting: must be at least 1, got 0"),
        ("queue: 100\n", "6: upstreams.app.queue: expected a mapping, got integer"),
        ("queue: {size: many}\n", "6: upstreams.app.queue.size: expected an integer, got string 'many'"),
        ("queue: {timeout: 0s}\n", "6: upstreams.app.queue.timeout: must be longer than 0, got '0s'"),
        ("queue: {timout: 1s}\n", "6: upstreams.app.queue.timout: unknown key 'timout' (did you mean 'timeout'?)"),
    ],
)
def test_problems(tmp_path: Path, body: str, expected: str) -> None:
    assert problems_with(tmp_path, body) == [expected]


def test_round_robin_refuses_weights(tmp_path: Path) -> None:
    weighted = '{address: "127.0.0.1:9002", weight: 3}]'
    text = HEAD.replace('"127.0.0.1:9002"]', weighted) + "    balance: round_robin\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [
        f"{path}:6: upstreams.app.balance: round_robin ignores weights, but targets[1] has weight 3: "
        "use balance: weighted"
    ]


def test_every_problem_of_an_upstream_in_one_run(tmp_path: Path) -> None:
    found = problems_with(
        tmp_path,
        """\
        balance: hash
        hash_key: nope
        health:
          path: x
          expect: 600
        outlier: {max_ejected: 2}
        retries:
          attempts: 99
          on: [bogus]
        """,
    )
    assert [re.sub(r": .*", "", line, count=1) for line in found] == [
        "7", "9", "10", "11", "13", "14",
    ]


FULL = HEAD + """\
    balance: hash
    hash_key: cookie:sid
    health: {path: /healthz, interval: 2s, timeout: 1s, unhealthy_after: 3, healthy_after: 2, expect: "200-399",
             jitter: 200ms}
    outlier: {consecutive_failures: 5, eject_for: 30s, max_ejected: 50%}
    retries: {attempts: 2, on: [connect_error, reset, 502], budget: 20%, per_try_timeout: 1s, total_timeout: 3s}
"""
_TREE = yaml.safe_load(FULL.replace("    retries: {attempts", "    retries: {'on': [connect_error], attempts"))


def _paths(tree: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=10),
        st.sampled_from(["hash", "ip", "header:x", "cookie:", "/h", "200-399", "50%", "1s", "reset", "on", 503]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HypothesisHealthCheck.function_scoped_fixture])
@given(st.sampled_from([p for p in _paths(_TREE) if p[:2] == ("upstreams", "app")]), _VALUES)
def test_any_value_anywhere_loads_or_raises_config_error(
    tmp_path: Path, where: tuple[object, ...], value: object
) -> None:
    tree = copy.deepcopy(_TREE)
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
