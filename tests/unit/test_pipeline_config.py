"""Config of the pipeline's route features: access lists, CORS, fixed responses, redirects,
rewrites, header/query conditions and weighted splits. Each mistake names file, line and key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from fastgw.config import load
from fastgw.config.model import Condition, HashKey, WeightedUpstream
from tests.unit.test_config import MINIMAL, only_problem, problems, write

BASE = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
  v2: {targets: ["127.0.0.1:9002"]}
routes:
"""


def route(text: str) -> str:
    return BASE + text


def test_access_lists_load_as_networks(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '    access: {allow: ["10.0.0.0/8", "::1"], deny: ["10.9.0.0/16"]}\naccess: {deny: ["192.0.2.0/24"]}\n'
    )
    config = load(write(tmp_path, text))
    access = config.routes[0].access
    assert access is not None and access.allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))
    assert config.access is not None and config.access.deny == (ipaddress.ip_network("192.0.2.0/24"),)


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ('{allow: ["10.0.0.0/33"]}', "8: routes[0].access.allow[0]: "),
        ('{deny: ["not-an-ip"]}', "8: routes[0].access.deny[0]: "),
        ("{}", "8: routes[0].access: needs at least one network in 'allow' or 'deny'"),
        (
            '{allow: ["10.0.0.0/8"], deny: ["10.0.0.0/8"]}',
            "8: routes[0].access.deny: 10.0.0.0/8 is both allowed and denied",
        ),
    ],
)
def test_bad_access_lists_name_the_key(tmp_path: Path, access: str, message: str) -> None:
    assert only_problem(tmp_path, MINIMAL + f"    access: {access}\n").startswith(message)


def test_cors_star_with_credentials_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL + '    cors: {origins: ["*"], credentials: true}\n'
    assert only_problem(tmp_path, text).startswith("8: routes[0].cors.origins: '*' cannot be used with credentials")


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        (
            '{origins: ["https://a.example.com/"]}',
            "8: routes[0].cors.origins[0]: 'https://a.example.com/' is not an origin",
        ),
        ('{origins: ["a.example.com"]}', "8: routes[0].cors.origins[0]: 'a.example.com' is not an origin"),
        ("{origins: []}", "8: routes[0].cors.origins: must not be empty"),
        ('{origins: ["https://a.com"], methods: [get]}', "8: routes[0].cors.methods[0]: expected an upper-case method"),
        ("{methods: [GET]}", "8: routes[0].cors.origins: required key is missing"),
    ],
)
def test_bad_cors_names_the_key(tmp_path: Path, cors: str, message: str) -> None:
    assert only_problem(tmp_path, MINIMAL + f"    cors: {cors}\n").startswith(message)


def test_route_targets_and_conditions_load(tmp_path: Path) -> None:
    text = route(
        """\
  - match: {prefix: /api, headers: {X-API-Version: "2"}, query: {beta: {present: true}}}
    upstreams: [{name: app, weight: 90}, {name: v2, weight: 10}]
    sticky: header:X-User
  - match: {path: /down}
    respond: {status: 503, body: later}
  - match: {path: "/old/{id}"}
    redirect: {to: "https://new.example/{id}{query}"}
  - match: {path: "/v1/users/{id}"}
    upstream: app
    rewrite: {path: "/users/{id}"}
"""
    )
    config = load(write(tmp_path, text))
    first = config.routes[0]
    assert first.match.conditions == (
        Condition("header", "x-api-version", "exact", "2"),
        Condition("query", "beta", "present"),
    )
    assert first.upstreams == (WeightedUpstream("app", 90), WeightedUpstream("v2", 10))
    assert first.sticky == HashKey("header", "x-user") and first.upstream == ""
    assert config.routes[1].respond is not None and config.routes[1].respond.body == b"later"
    assert config.routes[2].redirect is not None and config.routes[2].redirect.status == 308
    assert config.routes[3].rewrite is not None and config.routes[3].rewrite.path == "/users/{id}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "  - match: {prefix: /}\n    upstream: app\n    respond: {status: 200}\n",
            "7: routes[0]: needs exactly one of",
        ),
        (
            "  - match: {prefix: /}\n    upstreams: [{name: nope, weight: 1}]\n",
            "8: routes[0].upstreams[0].name: unknown upstream 'nope'",
        ),
        (
            "  - match: {prefix: /}\n    upstreams: [{name: app, weight: 0}]\n",
            "8: routes[0].upstreams: at least one weight",
        ),
        ("  - match: {prefix: /}\n    upstream: app\n    sticky: ip\n", "9: routes[0].sticky: sticky needs upstreams"),
        (
            "  - match: {prefix: /}\n    redirect: {to: /x, status: 200}\n",
            "8: routes[0].redirect.status: expected one of 301",
        ),
        (
            '  - match: {path: "/a/{id}"}\n    redirect: {to: "/b/{name}"}\n',
            "8: routes[0].redirect.to: {name} is not one of",
        ),
        (
            '  - match: {path: "/a/{id}"}\n    upstream: app\n    rewrite: {path: "/b/{idx}"}\n',
            "9: routes[0].rewrite.path: {idx} is not a parameter",
        ),
        (
            "  - match: {path: /a}\n    upstream: app\n    rewrite: {prefix: /b}\n",
            "9: routes[0].rewrite.prefix: a prefix rewrite needs match.prefix",
        ),
        (
            "  - match: {prefix: /a}\n    upstream: app\n    strip_prefix: true\n    rewrite: {prefix: /b}\n",
            "10: routes[0].rewrite: use either strip_prefix or rewrite",
        ),
        ("  - match: {path: /a}\n    respond: {status: 200}\n    rewrite: {prefix: /b}\n", "9: routes[0].rewrite"),
        (
            "  - match: {prefix: /a, headers: {X-V: {prefix: 1}}}\n    upstream: app\n",
            "7: routes[0].match.headers.X-V: expected a value",
        ),
        (
            "  - match: {prefix: /a, headers: {}}\n    upstream: app\n",
            "7: routes[0].match.headers: expected a non-empty mapping",
        ),
    ],
)
def test_bad_route_targets_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    found = problems(tmp_path, route(text))
    assert any(p.startswith(message) for p in found), found


def test_conditional_routes_must_share_the_pattern_and_differ(tmp_path: Path) -> None:
    same = route(
        "  - match: {prefix: /a}\n    upstream: app\n"
        '  - match: {prefix: /a, headers: {X-V: "2"}}\n    upstream: v2\n'
        '  - match: {prefix: /a, headers: {X-V: "2"}}\n    upstream: app\n'
    )
    assert only_problem(tmp_path, same).startswith("11: routes[2].match: same match and conditions as routes[1]")
    spelling = route(
        '  - match: {path: "/u/{id}"}\n    upstream: app\n'
        '  - match: {path: "/u/{name}", headers: {X-V: "2"}}\n    upstream: v2\n'
    )
    assert only_problem(tmp_path, spelling).startswith("9: routes[1].match: routes[0] matches the same requests")
