"""Config loading: the model a valid file produces, and the exact `FILE:LINE: key.path: message`
lines an invalid one produces."""
from __future__ import annotations

import copy
import io
import ipaddress
import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw.config import (
    AccessLog,
    Address,
    Admin,
    Config,
    ConfigError,
    ErrorBody,
    HeaderOps,
    Limits,
    Listener,
    Match,
    Target,
    Timeouts,
    load,
)
from fastgw.config.check import check_main

MINIMAL = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
routes:
  - match: {prefix: /}
    upstream: app
"""


def write(tmp_path: Path, text: str, name: str = "gw.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(tmp_path: Path, text: str, name: str = "gw.yaml") -> list[str]:
    """The problem lines without the `FILE:` prefix (which is checked here once for all)."""
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = info.value.problems
    assert all(line.startswith(f"{path}:") for line in lines), lines
    return [line[len(path) + 1 :] for line in lines]


def only_problem(tmp_path: Path, text: str) -> str:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------
# Valid configs


FULL = """\
workers: 4
grace_period: 15s
pidfile: run/fastgw.pid
listen:
  - {address: "0.0.0.0:8080"}
  - {address: "[::1]:8081"}
admin: {address: "127.0.0.1:9901"}
limits: {max_head: 32KiB, max_headers: 100, max_body: 10MiB, header_timeout: 10s, idle_timeout: 60s}
trusted_proxies: ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
upstreams:
  users:
    targets: ["127.0.0.1:9001", {address: "127.0.0.1:9002", weight: 2}]
    keepalive: 64
    timeouts: {connect: 1s, read: 30s}
  orders:
    targets: ["127.0.0.1:9003"]
    host_header: orders.internal
routes:
  - match: {prefix: /api/users, methods: [GET, POST], host: API.Example.com}
    upstream: users
    strip_prefix: true
    headers:
      request: {set: {X-Gateway: fastgw}, remove: [Cookie]}
      response: {remove: [Server, X-Powered-By]}
  - match: {path: "/api/users/{id}/orders"}
    upstream: orders
errors: {format: json}
access_log: {path: stdout, format: json}
"""


def test_full_config_loads_to_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load(path)
    assert config.source == os.path.abspath(path)
    assert config.workers == 4
    assert config.grace_period == 15.0
    assert config.pidfile == str(tmp_path / "run" / "fastgw.pid")
    assert config.listen == (Listener(Address("0.0.0.0", 8080)), Listener(Address("::1", 8081)))
    assert str(config.listen[1].address) == "[::1]:8081"
    assert config.admin == Admin(Address("127.0.0.1", 9901))
    assert config.limits == Limits(
        max_head=32 * 1024, max_headers=100, max_body=10 * 1024 * 1024, header_timeout=10.0, idle_timeout=60.0
    )
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    users = config.upstreams["users"]
    assert users.targets == (Target(Address("127.0.0.1", 9001)), Target(Address("127.0.0.1", 9002), weight=2))
    assert users.keepalive == 64
    assert users.timeouts == Timeouts(connect=1.0, read=30.0)
    assert users.host_header is None
    assert config.upstreams["orders"].host_header == "orders.internal"
    assert config.upstreams["orders"].keepalive == 32
    first, second = config.routes
    assert first.index == 0 and first.line == 19
    assert first.match == Match(prefix="/api/users", methods=("GET", "POST"), host="api.example.com")
    assert first.upstream == "users" and first.strip_prefix is True
    assert first.headers.request == HeaderOps(set=(("x-gateway", "fastgw"),), remove=("cookie",))
    assert first.headers.response == HeaderOps(remove=("server", "x-powered-by"))
    assert second.index == 1 and second.line == 25
    assert second.match == Match(path="/api/users/{id}/orders")
    assert second.strip_prefix is False and second.headers.request == HeaderOps()
    assert config.errors.format == "json" and dict(config.errors.bodies) == {}
    assert config.access_log == AccessLog(path="stdout", format="json")


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    config = load(write(tmp_path, MINIMAL))
    assert config.workers == 3
    assert config.grace_period == 30.0
    assert config.pidfile is None
    assert config.admin is None
    assert config.limits == Limits()
    assert config.limits.body_timeout == 30.0 and config.limits.max_url == 8 * 1024
    assert config.trusted_proxies == ()
    assert config.upstreams["app"].timeouts == Timeouts()
    assert config.upstreams["app"].targets == (Target(Address("127.0.0.1", 9001), weight=1),)
    assert config.routes[0].match == Match(prefix="/")
    assert config.errors.format == "json"
    assert config.access_log == AccessLog(path="stdout", format="json")


@pytest.mark.parametrize(("value", "workers"), [("auto", 7), ("1", 1), ("1024", 1024)])
def test_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, workers: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert load(write(tmp_path, f"workers: {value}\n" + MINIMAL)).workers == workers


def test_workers_auto_without_known_cpu_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert load(write(tmp_path, "workers: auto\n" + MINIMAL)).workers == 1


def test_json_config_with_tabs(tmp_path: Path) -> None:
    text = (
        '{\n\t"workers": 2,\n\t"listen": [{"address": "127.0.0.1:8080"}],\n'
        '\t"upstreams": {"app": {"targets": ["127.0.0.1:9001"]}},\n'
        '\t"routes": [{"match": {"prefix": "\\/api", "methods": ["GET"]}, "upstream": "app"}],\n'
        '\t"errors": {"bodies": {"404": {"body": "{\\"error\\": \\"nope\\"}"}}}\n}\n'
    )
    config = load(write(tmp_path, text, "gw.json"))
    assert config.workers == 2
    assert config.routes[0].match == Match(prefix="/api", methods=("GET",))
    assert config.routes[0].line == 5
    assert config.errors.bodies[404] == ErrorBody(b'{"error": "nope"}', "application/json")


def test_json_config_problems_have_lines(tmp_path: Path) -> None:
    text = '{\n\t"listen": [{"address": "127.0.0.1:8080"}],\n\t"wrokers": 2\n}\n'
    assert problems(tmp_path, text, "gw.json") == ["3: wrokers: unknown key 'wrokers' (did you mean 'workers'?)"]


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "pages").mkdir(parents=True)
    (conf_dir / "pages" / "404.html").write_bytes(b"<h1>gone</h1>")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(
        write(
            conf_dir,
            MINIMAL
            + """\
pidfile: fastgw.pid
access_log: {path: ../log/access.log, format: combined}
errors:
  format: text
  bodies:
    404: {file: pages/404.html, content_type: text/html}
    503: {body: try later}
""",
        )
    )
    assert config.pidfile == str(conf_dir / "fastgw.pid")
    assert config.access_log == AccessLog(path=str(tmp_path / "log" / "access.log"), format="combined")
    assert config.errors.format == "text"
    assert config.errors.bodies[404] == ErrorBody(b"<h1>gone</h1>", "text/html")
    assert config.errors.bodies[503] == ErrorBody(b"try later", "text/plain; charset=utf-8")


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL + "pidfile: /run/fastgw.pid\n"))
    assert config.pidfile == "/run/fastgw.pid"


@pytest.mark.parametrize(("value", "expected"), [("off", None), ('"off"', None), ("stderr", "stderr")])
def test_access_log_path_keywords(tmp_path: Path, value: str, expected: str | None) -> None:
    config = load(write(tmp_path, MINIMAL + f"access_log: {{path: {value}}}\n"))
    assert config.access_log.path == expected


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    config = load(
        write(
            tmp_path,
            """\
            listen: [{address: "127.0.0.1:8080"}]
            upstreams:
              a: &defaults
                keepalive: 8
                timeouts: {connect: 2s}
                targets: ["127.0.0.1:9001"]
              b:
                <<: *defaults
                keepalive: 4
                targets: ["127.0.0.1:9002"]
            """,
        )
    )
    b = config.upstreams["b"]
    assert b.keepalive == 4
    assert b.timeouts == Timeouts(connect=2.0)
    assert b.targets == (Target(Address("127.0.0.1", 9002)),)


# ---------------------------------------------------------------------------------------------
# Problems: one exact line each


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    text = MINIMAL.replace('app: {targets: ["127.0.0.1:9001"]}', 'app: {targets: ["127.0.0.1:9001"], tiemouts: {}}')
    assert only_problem(tmp_path, text) == (
        "4: upstreams.app.tiemouts: unknown key 'tiemouts' (did you mean 'timeouts'?)"
    )


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    assert only_problem(tmp_path, MINIMAL + "zzz: 1\n") == "8: zzz: unknown key 'zzz'"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('listen: "0.0.0.0:8080"', "1: listen: expected a list, got string"),
        ("limits: [1]", "1: limits: expected a mapping, got list"),
        ("grace_period: [1]", "1: grace_period: expected a duration such as 250ms, 2s, 1m or 1h"),
        ("workers: four", "1: workers: expected 'auto' or an integer from 1 to 1024, got string 'four'"),
        ("limits: {max_headers: '10'}", "1: limits.max_headers: expected an integer, got string '10'"),
        ("limits: {max_headers: 1.5}", "1: limits.max_headers: expected an integer, got number 1.5"),
        ("upstreams: [app]", "1: upstreams: expected a mapping of upstream names to upstreams, got list"),
        ("routes: {a: 1}", "1: routes: expected a list, got mapping"),
        ("trusted_proxies: 10.0.0.0/8", "1: trusted_proxies: expected a list, got string"),
        ("admin: 127.0.0.1:9901", "1: admin: expected a mapping, got string"),
        ("errors: {format: 1}", "1: errors.format: expected one of json, text, got integer 1"),
    ],
)
def test_wrong_types(tmp_path: Path, extra: str, expected: str) -> None:
    text = extra + "\n" + ("" if extra.startswith("listen") else 'listen: [{address: "127.0.0.1:8080"}]\n')
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_missing_required_keys_point_at_the_parent(tmp_path: Path) -> None:
    text = """\
    listen:
      - {address: "127.0.0.1:8080"}
    upstreams:
      app:
        keepalive: 3
    routes:
      - match: {prefix: /}
      - upstream: app
    admin: {}
    """
    assert problems(tmp_path, text) == [
        "4: upstreams.app.targets: required key is missing",
        "7: routes[0]: needs one of upstream, upstreams, respond, redirect, aggregate: where its requests go",
        "8: routes[1].match: required key is missing",
        "9: admin.address: required key is missing",
    ]


def test_listen_is_required(tmp_path: Path) -> None:
    assert only_problem(tmp_path, "workers: 2\n") == "1: listen: required key is missing"


def test_dangling_upstream(tmp_path: Path) -> None:
    text = MINIMAL + "  - match: {prefix: /b}\n    upstream: ap\n  - match: {prefix: /c}\n    upstream: zzz\n"
    assert problems(tmp_path, text) == [
        "9: routes[1].upstream: unknown upstream 'ap' (did you mean 'app'?)",
        "11: routes[2].upstream: unknown upstream 'zzz'; defined: app",
    ]


def test_route_naming_an_invalid_upstream_is_not_also_dangling(tmp_path: Path) -> None:
    text = MINIMAL.replace('targets: ["127.0.0.1:9001"]', "targets: []")
    assert problems(tmp_path, text) == ["4: upstreams.app.targets: must not be empty"]


def test_duplicate_key(tmp_path: Path) -> None:
    text = MINIMAL + "workers: 2\nworkers: 3\n"
    assert only_problem(tmp_path, text) == "9: workers: duplicate key 'workers' (first defined on line 8)"


def test_duplicate_key_in_flow_mapping(tmp_path: Path) -> None:
    text = MINIMAL.replace("{prefix: /}", "{prefix: /, prefix: /x}")
    assert only_problem(tmp_path, text) == "6: routes[0].match.prefix: duplicate key 'prefix' (first defined on line 6)"


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("{prefix: /api}", "{prefix: /api/}", "host *, prefix /api, methods *"),
        ("{path: '/u/{id}'}", "{path: '/u/{name}'}", "host *, path /u/{name}, methods *"),
        ("{path: /a, methods: [GET, POST]}", "{path: /a, methods: [POST, PUT]}", "host *, path /a, methods POST"),
        ("{path: /a}", "{path: /a, methods: [GET]}", "host *, path /a, methods GET"),
        ("{path: /a, host: A.com}", "{path: /a, host: a.com}", "host a.com, path /a, methods *"),
    ],
)
def test_duplicate_routes(tmp_path: Path, first: str, second: str, message: str) -> None:
    text = MINIMAL + f"  - {{match: {first}, upstream: app}}\n  - {{match: {second}, upstream: app}}\n"
    assert only_problem(tmp_path, text) == (
        f"9: routes[2].match: same match as routes[1] ({message}): routes[2] could never be chosen"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("{path: /a, methods: [GET]}", "{path: /a, methods: [POST]}"),
        ("{path: /a}", "{prefix: /a}"),
        ("{path: /a, host: a.com}", "{path: /a}"),
        ("{path: /a, host: a.com}", "{path: /a, host: '*.a.com'}"),
        ("{path: '/u/{id}'}", "{path: '/u/{id*}'}"),
    ],
)
def test_distinct_routes_are_not_duplicates(tmp_path: Path, first: str, second: str) -> None:
    text = MINIMAL + f"  - {{match: {first}, upstream: app}}\n  - {{match: {second}, upstream: app}}\n"
    assert len(load(write(tmp_path, text)).routes) == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("grace_period: 10 s", "grace_period: expected a duration such as 250ms, 2s, 1m or 1h"),
        ("grace_period: 2sec", "grace_period: unknown duration unit 'sec' in '2sec' (units: ms, s, m, h)"),
        ("grace_period: -1", "grace_period: a duration must be >= 0 seconds, got -1"),
        ("limits: {idle_timeout: 0s}", "limits.idle_timeout: must be longer than 0, got '0s'"),
        ("limits: {lingering_timeout: 0s}", "limits.lingering_timeout: must be longer than 0, got '0s'"),
        ("limits: {lingering_time: 10 s}", "limits.lingering_time: expected a duration such as 250ms, 2s, 1m or 1h"),
        ("limits: {max_body: 10M}", "limits.max_body: unknown size unit 'M' in '10M' (write MiB"),
        ("limits: {max_head: 512}", "limits.max_head: must be at least 1KiB, got 512"),
        ("limits: {max_headers: 0}", "limits.max_headers: must be at least 1, got 0"),
    ],
)
def test_bad_durations_and_sizes(tmp_path: Path, extra: str, expected: str) -> None:
    found = only_problem(tmp_path, MINIMAL + extra + "\n")
    assert found.startswith(f"8: {expected}"), found


def test_lingering_close_bounds(tmp_path: Path) -> None:
    limits = load(write(tmp_path, MINIMAL + "limits: {lingering_time: 1m, lingering_timeout: 250ms}\n")).limits
    assert (limits.lingering_time, limits.lingering_timeout) == (60.0, 0.25)
    assert (Limits().lingering_time, Limits().lingering_timeout) == (30.0, 5.0)  # nginx's defaults


def test_zero_max_body_means_no_body(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL + "limits: {max_body: 0}\n")).limits.max_body == 0


def test_bad_cidrs(tmp_path: Path) -> None:
    text = MINIMAL + 'trusted_proxies:\n  - "10.0.0.0/8"\n  - "10.0.0.0/33"\n  - "not-an-ip"\n  - 5\n'
    assert problems(tmp_path, text) == [
        "10: trusted_proxies[1]: '10.0.0.0/33' is not an IP address or CIDR network (e.g. 10.0.0.0/8)",
        "11: trusted_proxies[2]: 'not-an-ip' is not an IP address or CIDR network (e.g. 10.0.0.0/8)",
        "12: trusted_proxies[3]: expected an IP address or CIDR string, got integer 5",
    ]


def test_forwarding_headers_may_be_edited_in_responses(tmp_path: Path) -> None:
    text = MINIMAL + "    headers: {response: {set: {X-Forwarded-For: x}, remove: [X-Real-IP]}}\n"
    response = load(write(tmp_path, text)).routes[0].headers.response
    assert response == HeaderOps(set=(("x-forwarded-for", "x"),), remove=("x-real-ip",))


def test_strip_prefix_needs_a_prefix(tmp_path: Path) -> None:
    text = MINIMAL + "  - match: {path: /x}\n    upstream: app\n    strip_prefix: true\n"
    assert only_problem(tmp_path, text) == (
        "10: routes[1].strip_prefix: strip_prefix: true needs match.prefix (this route matches a path)"
    )


def test_strip_prefix_must_be_boolean(tmp_path: Path) -> None:
    text = MINIMAL + "    strip_prefix: yes please\n"
    assert only_problem(tmp_path, text) == "8: routes[0].strip_prefix: expected true or false, got string 'yes please'"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            "{request: {set: {Content-Length: '5'}}}",
            "request.set.Content-Length: 'Content-Length' cannot be set or removed: it frames the message",
        ),
        (
            "{request: {remove: [Transfer-Encoding]}}",
            "request.remove[0]: 'Transfer-Encoding' cannot be set or removed: it frames the message",
        ),
        (
            "{response: {remove: [connection]}}",
            "response.remove[0]: 'connection' cannot be set or removed: it is hop-by-hop",
        ),
        ("{request: {set: {Host: a.com}}}", "request.set.Host: 'Host' cannot be set or removed: the client's Host"),
        ("{request: {set: {Upgrade: x}}}", "request.set.Upgrade: 'Upgrade' cannot be set or removed: it is hop"),
        ("{request: {set: {TE: x}}}", "request.set.TE: 'TE' cannot be set or removed: it is hop-by-hop"),
        ("{request: {set: {Keep-Alive: x}}}", "request.set.Keep-Alive: 'Keep-Alive' cannot be set or removed"),
        ("{request: {set: {Trailer: x}}}", "request.set.Trailer: 'Trailer' cannot be set or removed"),
        ("{request: {remove: [Proxy-Connection]}}", "request.remove[0]: 'Proxy-Connection' cannot be set"),
        ('{request: {set: {X-A: "a\\r\\nX-B: b"}}}', "request.set.X-A: header values must not contain CR, LF or NUL"),
        ('{request: {set: {X-A: "a\\0"}}}', "request.set.X-A: header values must not contain CR, LF or NUL"),
        ("{request: {set: {X-A: 7}}}", "request.set.X-A: header values must be strings (quote it), got integer 7"),
        ("{request: {set: {X-A: é}}}", "request.set.X-A: header values must be ASCII"),
        ("{request: {set: {'X A': b}}}", 'request.set["X A"]: string \'X A\' is not a valid header name'),
        ("{request: {set: {X-A: b}, remove: [x-a]}}", "request.remove[0]: header 'x-a' is already edited at"),
        (
            "{request: {set: {X-Forwarded-For: 1.2.3.4}}}",
            "request.set.X-Forwarded-For: 'X-Forwarded-For' cannot be set or removed: the gateway sets it",
        ),
        ("{request: {remove: [Forwarded]}}", "request.remove[0]: 'Forwarded' cannot be set or removed: the gateway"),
        ("{request: {set: {X-Request-ID: a}}}", "request.set.X-Request-ID: 'X-Request-ID' cannot be set or removed"),
        ("{response: {remove: [X-Request-Id]}}", "response.remove[0]: 'X-Request-Id' cannot be set or removed: the"),
        ("{request: {sett: {}}}", "request.sett: unknown key 'sett' (did you mean 'set'?)"),
        ("{requests: {}}", "requests: unknown key 'requests' (did you mean 'request'?)"),
    ],
)
def test_header_edits(tmp_path: Path, edit: str, expected: str) -> None:
    found = only_problem(tmp_path, MINIMAL + f"    headers: {edit}\n")
    assert found.startswith(f"8: routes[0].headers.{expected}"), found


def test_yaml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    text = MINIMAL + "limits:\n  max_head: [32KiB\n  max_headers: 10\n"
    found = only_problem(tmp_path, text)
    assert found.startswith("10: (root): invalid YAML:"), found


def test_tab_indentation_in_yaml_is_a_syntax_error(tmp_path: Path) -> None:
    found = only_problem(tmp_path, MINIMAL + "limits:\n\tmax_head: 1KiB\n")
    assert found.startswith("9: (root): invalid YAML:") and "'\\t'" in found, found


def test_several_documents_are_refused(tmp_path: Path) -> None:
    found = only_problem(tmp_path, MINIMAL + "---\nworkers: 2\n")
    assert found.startswith("8: (root): invalid YAML: expected a single document"), found


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert only_problem(tmp_path, text) == "1: (root): the config file is empty (at least 'listen' is required)"


@pytest.mark.parametrize(("text", "kind"), [("- a\n", "list"), ("hello\n", "string"), ("42\n", "integer")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    assert only_problem(tmp_path, text) == f"1: (root): expected a mapping, got {kind}"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert info.value.problems == [f"{missing}:1: (root): cannot read the config file: No such file or directory"]
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert info.value.problems == [f"{tmp_path}:1: (root): cannot read the config file: Is a directory"]


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.problems == [f"{path}:8: (root): the config file is not UTF-8 text"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!python/object:os.system {}", "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'"),
        ("!!python/name:os.system ''", "invalid YAML: could not determine a constructor"),
        ("!custom [1]", "unsupported YAML tag '!custom'"),
    ],
)
def test_non_standard_tags_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    found = only_problem(tmp_path, MINIMAL + f"workers: {value}\n")
    assert found.startswith(f"8: (root): {expected}"), found


def test_multiple_problems_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = """\
    workers: 0
    listen:
      - {address: "0.0.0.0:80"}
    upstreams:
      app:
        targets: ["127.0.0.1:9001"]
        keepalive: -1
    routes:
      - match: {prefix: api}
        upstream: nope
    grace_period: soon
    """
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [
        f"{path}:1: workers: must be from 1 to 1024, got 0",
        f"{path}:7: upstreams.app.keepalive: must be at least 0, got -1",
        f"{path}:9: routes[0].match.prefix: must start with '/', got 'api'",
        f"{path}:10: routes[0].upstream: unknown upstream 'nope'; defined: app",
        f"{path}:11: grace_period: expected a duration such as 250ms, 2s, 1m or 1h (or a number of seconds),"
        " got 'soon'",
    ]
    assert str(info.value) == "\n".join(info.value.problems)


# ---------------------------------------------------------------------------------------------
# Addresses


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ('"[::]:8080"', Address("::", 8080)),
        ('"localhost:8080"', Address("localhost", 8080)),
        ('"10.1.2.3:65535"', Address("10.1.2.3", 65535)),
    ],
)
def test_listen_addresses(tmp_path: Path, address: str, expected: Address) -> None:
    config = load(write(tmp_path, MINIMAL.replace('"127.0.0.1:8080"', address)))
    assert config.listen[0].address == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ('"::1:8080"', "write IPv6 addresses in brackets, as [::1]:8080"),
        ('":8080"', "missing host in ':8080' (use 0.0.0.0 or [::] for all interfaces)"),
        ('"127.0.0.1"', "expected \"HOST:PORT\", got '127.0.0.1' (no port)"),
        ('"127.0.0.1:0"', "port must be from 1 to 65535, got '0'"),
        ('"127.0.0.1:65536"', "port must be from 1 to 65535, got '65536'"),
        ('"127.0.0.1:http"', "port must be from 1 to 65535, got 'http'"),
        ('"[1.2.3.4]:80"', "expected \"[IPv6]:PORT\", got '[1.2.3.4]:80'"),
        ('"[zz::1]:80"', "'zz::1' is not an IP address or host name"),
        ('"10.0.0.256:80"', "'10.0.0.256' is not an IP address or host name"),
        ('"bad_host!:80"', "'bad_host!' is not an IP address or host name"),
        ("8080", 'expected an address "HOST:PORT", got integer 8080'),
    ],
)
def test_bad_listen_addresses(tmp_path: Path, address: str, message: str) -> None:
    text = MINIMAL.replace('"127.0.0.1:8080"', address)
    assert only_problem(tmp_path, text) == f"2: listen[0].address: {message}"


def test_listen_items_are_mappings(tmp_path: Path) -> None:
    text = MINIMAL.replace('{address: "127.0.0.1:8080"}', '"127.0.0.1:8080"')
    assert only_problem(tmp_path, text) == (
        '2: listen[0]: expected a mapping, got string (write {address: "127.0.0.1:8080"})'
    )


def test_underscores_in_headers_is_off_unless_asked(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).listen[0].underscores_in_headers is False
    text = MINIMAL.replace('{address: "127.0.0.1:8080"}', '{address: "127.0.0.1:8080", underscores_in_headers: true}')
    assert load(write(tmp_path, text)).listen[0].underscores_in_headers is True
    bad = MINIMAL.replace('{address: "127.0.0.1:8080"}', '{address: "127.0.0.1:8080", underscores_in_headers: 1}')
    assert only_problem(tmp_path, bad).startswith("2: listen[0].underscores_in_headers: ")


def test_listen_must_not_be_empty(tmp_path: Path) -> None:
    assert only_problem(tmp_path, "listen: []\n") == "1: listen: must not be empty"


def test_duplicate_and_overlapping_listen_addresses(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '  - {address: "127.0.0.1:8080"}\n',
        '  - {address: "0.0.0.0:8080"}\n  - {address: "0.0.0.0:8080"}\n  - {address: "127.0.0.1:8080"}\n'
        '  - {address: "[::1]:8080"}\n',
    )
    assert problems(tmp_path, text) == [
        "3: listen[1].address: same address as listen[0] (0.0.0.0:8080)",
        "4: listen[2].address: overlaps listen[0] (0.0.0.0:8080)",
    ]


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("127.0.0.1:8080", "same address as listen[0] (127.0.0.1:8080)"),
        ("0.0.0.0:8080", "overlaps listen[0] (127.0.0.1:8080)"),
    ],
)
def test_admin_must_not_clash_with_listen(tmp_path: Path, admin: str, message: str) -> None:
    text = MINIMAL + f'admin: {{address: "{admin}"}}\n'
    assert only_problem(tmp_path, text) == f"8: admin.address: {message}"


# ---------------------------------------------------------------------------------------------
# Upstreams


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("{targets: x}", 'upstreams.app.targets: expected a list, got string'),
        ("{targets: [1]}", 'upstreams.app.targets[0]: expected "HOST:PORT" or {address: "HOST:PORT", weight: N}'),
        (
            '{targets: [{address: "127.0.0.1:1", weight: 0}]}',
            "upstreams.app.targets[0].weight: must be from 1 to 1000, got 0",
        ),
        (
            '{targets: [{address: "127.0.0.1:1", weight: 1001}]}',
            "upstreams.app.targets[0].weight: must be from 1 to 1000, got 1001",
        ),
        ("{targets: [{weight: 2}]}", "upstreams.app.targets[0].address: required key is missing"),
        (
            '{targets: ["127.0.0.1:1", "127.0.0.1:1"]}',
            "upstreams.app.targets[1]: duplicate target 127.0.0.1:1 (also targets[0])",
        ),
        (
            '{targets: ["127.0.0.1:1"], timeouts: {connect: 0}}',
            "upstreams.app.timeouts.connect: must be longer than 0, got 0",
        ),
        ('{targets: ["127.0.0.1:1"], host_header: "a b"}', "upstreams.app.host_header: 'a b' is not an IP address"),
        ('{targets: ["127.0.0.1:1"], host_header: "a.com:99999"}', "upstreams.app.host_header: 'a.com:99999' has an"),
        ('{targets: ["127.0.0.1:1"], host_header: "[1.2.3.4]"}', "upstreams.app.host_header: '[1.2.3.4]' is not a"),
        ('{targets: ["127.0.0.1:1"], host_header: "[::1]x"}', "upstreams.app.host_header: '[::1]x' is not a valid"),
    ],
)
def test_bad_upstreams(tmp_path: Path, upstream: str, expected: str) -> None:
    text = MINIMAL.replace('{targets: ["127.0.0.1:9001"]}', upstream)
    found = only_problem(tmp_path, text)
    assert found.startswith(f"4: {expected}"), found


@pytest.mark.parametrize("host_header", ["a.com", "a.com:8080", "[::1]:8080", "[::1]", "10.0.0.1"])
def test_host_header(tmp_path: Path, host_header: str) -> None:
    text = MINIMAL.replace('["127.0.0.1:9001"]}', f'["127.0.0.1:9001"], host_header: "{host_header}"}}')
    assert load(write(tmp_path, text)).upstreams["app"].host_header == host_header


def test_bad_upstream_name(tmp_path: Path) -> None:
    text = MINIMAL.replace("  app: {", '  "my app": {') + "  - {match: {prefix: /x}, upstream: app}\n"
    assert problems(tmp_path, text) == [
        '4: upstreams["my app"]: upstream name \'my app\' may only contain letters, digits, \'_\', \'.\' and \'-\'',
        "7: routes[0].upstream: unknown upstream 'app' (did you mean 'my app'?)",
        "8: routes[1].upstream: unknown upstream 'app' (did you mean 'my app'?)",
    ]


# ---------------------------------------------------------------------------------------------
# Route matches


def route_with(match: str) -> str:
    return MINIMAL.replace("{prefix: /}", match)


VALID_MATCHES: list[tuple[str, Match]] = [
    ("{path: /}", Match(path="/")),
    ("{path: /a/b/}", Match(path="/a/b/")),
    ("{path: '/users/{id}/orders/{order_id}'}", Match(path="/users/{id}/orders/{order_id}")),
    ("{path: '/files/{rest*}'}", Match(path="/files/{rest*}")),
    ("{path: '/a/%20b'}", Match(path="/a/%20b")),
    ("{path: \"/a:b@c;d=e,f~g!h$i&j'k(l)m*n+o\"}", Match(path="/a:b@c;d=e,f~g!h$i&j'k(l)m*n+o")),
    ("{path: '/a|b/\"q\"/<x>/[y]/^`'}", Match(path='/a|b/"q"/<x>/[y]/^`')),
    ("{path: '/%C3%A9t%C3%A9'}", Match(path="/%C3%A9t%C3%A9")),
    ("{path: '" + "/a" * 64 + "'}", Match(path="/a" * 64)),
    ("{prefix: /api/}", Match(prefix="/api")),
    ("{prefix: /}", Match(prefix="/")),
    ("{prefix: /v1, methods: [GET, M-SEARCH]}", Match(prefix="/v1", methods=("GET", "M-SEARCH"))),
    ("{prefix: /v1, host: '*.Example.COM'}", Match(prefix="/v1", host="*.example.com")),
    ("{prefix: /v1, host: '[::1]'}", Match(prefix="/v1", host="[::1]")),
    ("{prefix: /v1, host: 10.0.0.1}", Match(prefix="/v1", host="10.0.0.1")),
]


@pytest.mark.parametrize(("match", "expected"), VALID_MATCHES)
def test_valid_matches(tmp_path: Path, match: str, expected: Match) -> None:
    assert load(write(tmp_path, route_with(match))).routes[0].match == expected


@pytest.mark.parametrize("match", [case[0] for case in VALID_MATCHES])
def test_the_router_accepts_every_match_the_config_accepts(tmp_path: Path, match: str) -> None:
    """A route the config accepts but the router refuses would pass `check` and then stop the
    gateway at boot; the pure-Python router twin has the same rules as the compiled one."""
    from fastgw._pycore.trie import RouteTrie

    m = load(write(tmp_path, route_with(match))).routes[0].match
    RouteTrie().add("route", path=m.path, prefix=m.prefix, methods=m.methods, host=m.host)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("{}", "match: needs exactly one of 'path' (exact) or 'prefix'"),
        ("{path: /a, prefix: /a}", "match: needs exactly one of 'path' (exact) or 'prefix'"),
        ("{path: a}", "match.path: must start with '/', got 'a'"),
        ("{path: 5}", "match.path: expected a path string starting with '/', got integer 5"),
        ("{path: '/a?b=1'}", "match.path: routes match the path only; remove the query ('?') or fragment ('#')"),
        ("{path: '/a//b'}", "match.path: empty segment ('//'): repeated slashes are merged before routing"),
        ("{path: /a/../b}", "match.path: dot segment '..': dot segments are resolved before routing"),
        ("{path: /a/./b}", "match.path: dot segment '.': dot segments are resolved before routing"),
        ("{path: '/a b'}", "match.path: character ' ' is not allowed in a path (percent-encode it)"),
        ("{path: '/a\\b'}", "match.path: a backslash can never match: requests containing one are refused"),
        ("{path: '/a%3a'}", "match.path: write '%3A' instead of '%3a': escapes are upper-cased before routing"),
        ("{path: '/a%5C'}", "match.path: '%5C' can never match: requests containing it are refused"),
        ("{path: '/a%00'}", "match.path: '%00' can never match: requests containing it are refused"),
        ("{path: '" + "/a" * 65 + "'}", "match.path: has more than 64 segments"),
        ("{prefix: '" + "/a" * 65 + "'}", "match.prefix: has more than 64 segments"),
        ("{path: /café}", "match.path: character 'é' is not allowed in a path (percent-encode it)"),
        ("{path: '/a%2Fb'}", "match.path: '%2F' can never match: requests containing it are refused"),
        ("{path: '/a%41'}", "match.path: write 'A' instead of '%41': it is decoded before routing"),
        ("{path: '/a%zz'}", "match.path: invalid percent-escape in segment 'a%zz'"),
        ("{path: '/u/{id}x'}", "match.path: segment '{id}x' must be literal text or one whole parameter such as {id}"),
        ("{path: '/u/{1d}'}", "match.path: segment '{1d}' must be literal text or one whole parameter"),
        ("{path: '/u/{}'}", "match.path: segment '{}' must be literal text or one whole parameter"),
        ("{path: '/u/{rest*}/x'}", "match.path: catch-all '{rest*}' must be the last segment"),
        ("{path: '/u/{rest*}/'}", "match.path: catch-all '{rest*}' must be the last segment"),
        ("{path: '/u/{id}/v/{id}'}", "match.path: parameter name 'id' is used twice"),
        ("{prefix: '/u/{id}'}", "match.prefix: a prefix is literal; use 'path' for {parameters}"),
        ("{prefix: api}", "match.prefix: must start with '/', got 'api'"),
        ("{prefix: /a//}", "match.prefix: empty segment ('//')"),
        ("{path: /a, methods: []}", "match.methods: must list at least one method (omit 'methods' to match any"),
        ("{path: /a, methods: GET}", "match.methods: expected a list of methods such as [GET, POST], got string"),
        ("{path: /a, methods: [get]}", "match.methods: methods are case-sensitive: write 'GET', not 'get'"),
        ("{path: /a, methods: [GET, GET]}", "match.methods: method 'GET' is listed twice"),
        ("{path: /a, methods: ['*']}", "match.methods: omit 'methods' to match any method"),
        ("{path: /a, methods: ['GE T']}", "match.methods: 'GE T' is not a method name"),
        ("{path: /a, host: 'a.com:8080'}", "match.host: 'a.com:8080': routes match the Host without its port"),
        ("{path: /a, host: '*'}", "match.host: omit 'host' to match any host"),
        ("{path: /a, host: 'api.*.com'}", "match.host: only a leading '*.' wildcard is supported"),
        ("{path: /a, host: 'a..com'}", "match.host: 'a..com' is not a valid host name"),
        ("{path: /a, host: '[zz]'}", "match.host: '[zz]' is not a valid IPv6 literal"),
        ("{path: /a, hots: a.com}", "match.hots: unknown key 'hots' (did you mean 'host'?)"),
    ],
)
def test_bad_matches(tmp_path: Path, match: str, expected: str) -> None:
    found = only_problem(tmp_path, route_with(match))
    assert found.startswith(f"6: routes[0].{expected}"), found


# ---------------------------------------------------------------------------------------------
# Error bodies and access log


def test_error_bodies_defaults_follow_the_format(tmp_path: Path) -> None:
    text = MINIMAL + 'errors:\n  bodies:\n    404: {body: \'{"error": "none"}\'}\n    "503": {body: "{}"}\n'
    errors = load(write(tmp_path, text)).errors
    assert errors.format == "json"
    assert dict(errors.bodies) == {
        404: ErrorBody(b'{"error": "none"}', "application/json"),
        503: ErrorBody(b"{}", "application/json"),
    }


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        ("{200: {body: '{}'}}", "errors.bodies.200: expected an error status from 400 to 599, got 200"),
        ("{abc: {body: '{}'}}", "errors.bodies.abc: expected an error status from 400 to 599, got 'abc'"),
        ("{404: {body: x, file: y}}", "errors.bodies.404: needs exactly one of 'body' or 'file'"),
        ("{404: {}}", "errors.bodies.404: needs exactly one of 'body' or 'file'"),
        ("{404: not json}", "errors.bodies.404: expected a mapping, got string"),
        (
            "{404: {body: not json}}",
            "errors.bodies.404.body: is not valid JSON but the content type is 'application/json'; set content_type",
        ),
        ("{404: {body: 5}}", "errors.bodies.404.body: expected a string, got integer 5"),
        ("{404: {file: missing.json}}", "errors.bodies.404.file: cannot read "),
        ('{404: {body: x, content_type: "text/plain\\n"}}', "errors.bodies.404.content_type: header values must not"),
        ("{404: {body: '{}'}, '404': {body: '[]'}}", "errors.bodies.404: status 404 is given twice"),
    ],
)
def test_bad_error_bodies(tmp_path: Path, bodies: str, expected: str) -> None:
    found = only_problem(tmp_path, MINIMAL + f"errors: {{bodies: {bodies}}}\n")
    assert found.startswith(f"8: {expected}"), found


def test_error_body_file_is_size_bounded(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "ok.txt").write_bytes(b"x" * (64 * 1024))
    found = only_problem(
        tmp_path, MINIMAL + "errors:\n  format: text\n  bodies:\n    500: {file: big.txt}\n    502: {file: ok.txt}\n"
    )
    assert found == f"11: errors.bodies.500.file: {tmp_path / 'big.txt'} is larger than 64KiB"


def test_access_log_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL + "access_log: {path: '', format: clf, rotate: daily}\n") == [
        "8: access_log.rotate: unknown key 'rotate'",
        "8: access_log.path: must not be empty",
        "8: access_log.format: expected one of json, combined, got string 'clf'",
    ]


def test_odd_keys_are_quoted_on_one_line(tmp_path: Path) -> None:
    assert only_problem(tmp_path, MINIMAL + '"a.b\\n\\"c\\"": 1\n') == (
        '8: ["a.b\\n\\"c\\""]: unknown key \'a.b\\n"c"\''
    )


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "trusted_proxies: &loop [*loop]\n")
    assert found[0] == "8: trusted_proxies[0]: recursive alias (a node that contains itself)", found



def test_a_large_table_without_aliases_loads(tmp_path: Path) -> None:
    # 40,000 routes are over 200,000 YAML nodes: refused as "aliases expanded too far" when the
    # bound counted every node of the document instead of those reached again through aliases.
    routes = "".join(f"  - {{match: {{path: /r{i}}}, upstream: app}}\n" for i in range(40_000))
    config = load(write(tmp_path, MINIMAL.split("routes:")[0] + "routes:\n" + routes))
    assert len(config.routes) == 40_000


def test_aliases_that_expand_too_far_are_refused(tmp_path: Path) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = MINIMAL + "".join(f"x-{line}\n" for line in laughs)
    assert only_problem(tmp_path, text).endswith(": (root): document too large (aliases expanded too far)")


# ---------------------------------------------------------------------------------------------
# fastgw check


def test_check_prints_the_route_table_and_config_ok(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()  # for the pidfile: check verifies the directory
    out, err = io.StringIO(), io.StringIO()
    assert check_main(write(tmp_path, FULL), out=out, err=err) == 0
    assert err.getvalue() == ""
    assert out.getvalue() == (
        "#  METHODS   HOST             MATCH                        UPSTREAM  TARGETS\n"
        "0  GET,POST  api.example.com  prefix /api/users (strip)    users     127.0.0.1:9001, 127.0.0.1:9002 (w=2)\n"
        "1  *         *                path /api/users/{id}/orders  orders    127.0.0.1:9003\n"
        "config ok\n"
    )


def test_check_without_routes(tmp_path: Path) -> None:
    out = io.StringIO()
    assert check_main(write(tmp_path, 'listen: [{address: "127.0.0.1:8080"}]\n'), out=out, err=io.StringIO()) == 0
    assert out.getvalue() == (
        "#  METHODS  HOST  MATCH  UPSTREAM  TARGETS\n(no routes: every request is answered 404)\nconfig ok\n"
    )


def test_check_reports_each_problem_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "workers: 0\nbogus: 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_main(path, out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (
        f"{path}:8: workers: must be from 1 to 1024, got 0\n{path}:9: bogus: unknown key 'bogus'\n"
    )


def test_check_unreadable_file_exits_2(tmp_path: Path) -> None:
    err = io.StringIO()
    assert check_main(str(tmp_path / "missing.yaml"), out=io.StringIO(), err=err) == 2
    assert err.getvalue().endswith(": (root): cannot read the config file: No such file or directory\n")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    assert isinstance(config, Config)
    with pytest.raises(AttributeError):
        config.workers = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.upstreams["x"] = config.upstreams["app"]  # type: ignore[index]


def test_the_reference_example_checks_as_documented(tmp_path: Path) -> None:
    """docs/configuration.md shows a config and the output of `fastgw check` for it; both must
    stay true."""
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = doc.split("## A complete example", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    printed = section.split("prints:\n\n```\n", 1)[1].split("```", 1)[0]
    out = io.StringIO()
    assert check_main(write(tmp_path, example), out=out, err=io.StringIO()) == 0
    assert out.getvalue() == printed


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "0.0.0.0:80", "/", "/a/{b}", "GET", "1s", "1KiB", "off", "app", "[::1]:1"]),
)
_KEYS = st.one_of(
    st.sampled_from(
        ["workers", "listen", "address", "upstreams", "app", "targets", "routes", "match", "path", "prefix",
         "methods", "host", "upstream", "headers", "request", "set", "remove", "errors", "bodies", "404",
         "body", "access_log", "limits", "max_head", "timeouts", "weight", "strip_prefix"]
    ),
    st.text(max_size=6),
    st.integers(min_value=0, max_value=600),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=25,
)


def _paths(tree: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


_FULL_TREE = yaml.safe_load(FULL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_paths(_FULL_TREE)), _TREES)
def test_any_value_anywhere_loads_or_raises_config_error(
    tmp_path: Path, where: tuple[object, ...], value: object
) -> None:
    """Whatever value sits at whatever place of a valid config, loading ends in a Config or in a
    ConfigError whose lines all have the contract's shape; never in another exception (which
    `check` would turn into a traceback)."""
    tree = copy.deepcopy(_FULL_TREE)
    if where:
        parent = tree
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
    else:
        tree = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(tree))
    try:
        load(str(path))
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert re.fullmatch(rf"{re.escape(str(path))}:\d+: .+?: .+", line), line


def test_check_verifies_what_the_file_asks_of_this_host(tmp_path: Path) -> None:
    """Directories that are missing, a log path that is a directory, listen hosts that do not
    resolve or are not this host's: problems for `check` (and `run`), with their lines; `load`
    alone (as `fastgw reload` uses it, possibly as another user) does not look."""
    (tmp_path / "logs").mkdir()
    text = textwrap.dedent(f"""\
        pidfile: {tmp_path}/nowhere/fastgw.pid
        listen:
          - {{address: "no-such-host.invalid:8080"}}
          - {{address: "192.0.2.1:8080"}}
          - {{address: "127.0.0.1:8080"}}
        admin: {{address: "127.0.0.1:9901"}}
        access_log: {{path: logs}}
        """)
    path = write(tmp_path, text)
    load(path)  # valid as a file
    out, err = io.StringIO(), io.StringIO()
    assert check_main(path, out=out, err=err) == 2
    found = [line[len(path) + 1:] for line in err.getvalue().splitlines()]
    assert found[0] == f"1: pidfile: directory {tmp_path}/nowhere does not exist (for the pidfile, " \
        f"{tmp_path}/nowhere/fastgw.pid)"
    assert found[1].startswith("3: listen[0].address: cannot resolve host 'no-such-host.invalid': ")
    assert found[2:] == [
        "4: listen[1].address: 192.0.2.1 is not an address of this host",
        f"7: access_log.path: {tmp_path}/logs is a directory, not a file",
    ]
    with pytest.raises(ConfigError) as info:
        load(path, host_checks=True)
    assert [line[len(path) + 1:] for line in info.value.problems] == found


def test_check_accepts_files_it_can_write(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    text = MINIMAL + "pidfile: run/fastgw.pid\naccess_log: {path: access.log}\nadmin: {address: 'localhost:9901'}\n"
    assert check_main(write(tmp_path, text), out=io.StringIO(), err=io.StringIO()) == 0


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("http://127.0.0.1:9001", "an address is HOST:PORT, not a URL: write '127.0.0.1:9001'"),
        ("http://backend.internal/api", "an address is HOST:PORT, not a URL: write 'backend.internal:80'"),
        ("https://api.example.com", "an address is HOST:PORT, not a URL: write 'api.example.com:443' "
                                    "(TLS is not part of an address: it is the `tls` key of an upstream or listener)"),
        ("http://[::1]:9001/", "an address is HOST:PORT, not a URL: write '[::1]:9001'"),
    ],
)
def test_a_url_where_an_address_belongs_gets_the_address_to_write(tmp_path: Path, written: str, message: str) -> None:
    found = only_problem(tmp_path, MINIMAL.replace("127.0.0.1:9001", written))
    assert found == f"4: upstreams.app.targets[0]: {message}"
    text = MINIMAL.replace('"127.0.0.1:8080"', f'"{written}"')
    assert only_problem(tmp_path, text) == f"2: listen[0].address: {message}"


# ---------------------------------------------------------------------------------------------
# admin


def test_admin_token_and_token_file(tmp_path: Path) -> None:
    token = "s3cret-token-0123456789"
    config = load(write(tmp_path, MINIMAL + f"admin: {{address: '127.0.0.1:9901', token: {token}}}\n"))
    assert config.admin == Admin(Address("127.0.0.1", 9901), token)
    assert token not in repr(config.admin)
    (tmp_path / "admin.token").write_text(token + "\n")
    config = load(write(tmp_path, MINIMAL + "admin: {address: '[::]:9901', token_file: admin.token}\n"))
    assert config.admin == Admin(Address("::", 9901), token)


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("{address: '0.0.0.0:9901'}", "admin.address: 0.0.0.0:9901 is not a loopback address, so the admin API "
         "needs a token (token or token_file): it reloads the gateway and shows its configuration"),
        ("{address: 'admin.example.com:9901'}", "admin.address: admin.example.com:9901 is not a loopback address"),
        ("{address: '127.0.0.1:9901', token: short}", "admin.token: a token needs at least 16 characters, got 5"),
        ("{address: '127.0.0.1:9901', token: 'with space 0123456789'}",
         "admin.token: a token is visible ASCII characters without spaces"),
        ("{address: '127.0.0.1:9901', token: 12345678901234567890}", "admin.token: expected a string, got integer"),
        ("{address: '127.0.0.1:9901', token: aaaaaaaaaaaaaaaaaaaa, token_file: t}",
         "admin.token_file: give either token or token_file, not both"),
        ("{address: '0.0.0.0:9901', token_file: missing.token}", "admin.token_file: cannot read "),
    ],
)
def test_admin_problems(tmp_path: Path, admin: str, message: str) -> None:
    found = only_problem(tmp_path, MINIMAL + f"admin: {admin}\n")
    assert found.startswith(f"8: {message}"), found


@pytest.mark.parametrize("address", ["127.0.0.1:9901", "127.8.9.10:9901", "[::1]:9901", "localhost:9901"])
def test_admin_on_loopback_needs_no_token(tmp_path: Path, address: str) -> None:
    assert load(write(tmp_path, MINIMAL + f"admin: {{address: '{address}'}}\n")).admin is not None
