"""Config of aggregation routes and compression (`routes[].aggregate`, `routes[].compress`): the
model a valid file gives, and one `FILE:LINE: key.path: message` per mistake; the template
parser and the Accept-Encoding negotiation on their own."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw.aggregate.template import Missing, Ref, lookup, parse, scalar_text
from fastgw.compress import TypeMatcher, negotiate
from fastgw.config.load import load
from fastgw.config.model import AggregateCall, Compress
from fastgw.config.report import ConfigError

HEAD = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  users: {targets: ["127.0.0.1:9001"]}
  orders: {targets: ["127.0.0.1:9002"]}
routes:
"""
AUTH = """\
auth:
  main: {type: jwt, algorithms: [HS256], secret: "an-hs256-secret-of-32-bytes-or-more!"}
  keys: {type: api_key, keys: {partner: a-key-of-16-chars-or-more}}
"""


def load_text(tmp_path: Path, routes: str) -> object:
    path = tmp_path / "gw.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(routes), "  ") + AUTH)
    return load(str(path))


def problems(tmp_path: Path, routes: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, routes)
    prefix = f"{tmp_path / 'gw.yaml'}:"
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p[len(prefix):] for p in info.value.problems]


def test_a_valid_aggregation_and_compression(tmp_path: Path) -> None:
    config = load_text(tmp_path, """\
        - match: {path: "/dash/{id}"}
          auth: main
          aggregate:
            profile: {upstream: users, path: "/users/{claim.sub}?v={id}", keep: [id, address.city], rename: {id: uid}}
            orders:
              upstream: orders
              path: "/orders?team={profile.team_id}&q={query.q}"
              headers: {X-User: "{header.x-user}"}
              optional: true
              timeout: 800ms
              max_body: 64KiB
              drop: [secret]
          compress: {types: [application/json, "text/*"], min_size: 100B, encodings: [br, gzip], level: {br: 5}}
        - match: {prefix: /plain}
          upstream: users
          compress: true
        """)
    routes = config.routes  # type: ignore[attr-defined]
    assert routes[0].upstream == "" and routes[0].aggregate == (
        AggregateCall("profile", "users", "/users/{claim.sub}?v={id}", keep=("id", "address.city"),
                      rename=(("id", "uid"),)),
        AggregateCall("orders", "orders", "/orders?team={profile.team_id}&q={query.q}",
                      headers=(("x-user", "{header.x-user}"),), timeout=0.8, max_body=65536, optional=True,
                      drop=("secret",), depends=("profile",)),
    )
    assert routes[0].compress == Compress(types=("application/json", "text/*"), min_size=100, encodings=("br", "gzip"),
                                          br_level=5)
    assert routes[1].compress == Compress() and routes[1].aggregate == ()


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ("- match: {path: /d}\n  aggregate: {}\n", ["8: routes[0].aggregate: needs at least one call"]),
        ("- match: {path: /d}\n  aggregate: {a: {upstream: user, path: /x}}\n",
         ["8: routes[0].aggregate.a.upstream: unknown upstream 'user' (did you mean 'users'?)"]),
        ("- match: {path: /d}\n  aggregate: {a: {upstream: users}}\n",
         ["8: routes[0].aggregate.a.path: required key is missing"]),
        ('- match: {path: "/d/{id}"}\n  aggregate: {a: {upstream: users, path: "/x/{idd}"}}\n',
         ["8: routes[0].aggregate.a.path: {idd}: no path parameter 'idd' (did you mean 'id'?): match.path has {id}; "
          "a request value is written {claim.NAME}, {query.NAME} or {header.NAME}"]),
        ('- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: "/x/{b.id}"}}\n',
         ["8: routes[0].aggregate.a.path: {b.id}: 'b' is not a source (claim, query, header) nor a call of this "
          "aggregate (calls: a)"]),
        ('- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: "/x/{a.id}"}}\n',
         ["8: routes[0].aggregate.a.path: {a.id}: a call cannot use its own answer"]),
        ('- match: {prefix: /d}\n  aggregate:\n    a: {upstream: users, path: "/x/{b.id}"}\n'
         '    b: {upstream: users, path: "/x/{a.id}"}\n',
         ["10: routes[0].aggregate.b.path: dependency cycle: a -> b -> a"]),
        ('- match: {prefix: /d}\n  aggregate:\n    a: {upstream: users, path: "/x/{b.id}"}\n'
         '    b: {upstream: users, path: "/x/{c.id}"}\n    c: {upstream: users, path: "/x"}\n',
         ["9: routes[0].aggregate.a.path: a uses b, which uses c: at most two stages (a call may use the answers of "
          "calls that use no other call)"]),
        ("- match: {prefix: /d}\n  aggregate: {errors: {upstream: users, path: /x}}\n",
         ["8: routes[0].aggregate.errors: 'errors' is reserved (templates read claim., query., header.; failures are "
          "listed under 'errors'): choose another call name"]),
        ('- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: "x/{"}}\n',
         ["8: routes[0].aggregate.a.path: must start with '/', got 'x/{'"]),
        ('- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: "/x/{"}}\n',
         ["8: routes[0].aggregate.a.path: unbalanced '{' or '}': a reference is written {name}"]),
        ("- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: /x, timeout: 0s, max_body: 0B}}\n",
         ["8: routes[0].aggregate.a.timeout: must be longer than 0, got '0s'",
          "8: routes[0].aggregate.a.max_body: must be from 1B to 64MiB, got '0B'"]),
        ("- match: {prefix: /d}\n  upstream: users\n  aggregate: {a: {upstream: users, path: /x}}\n",
         ["7: routes[0]: needs exactly one of upstream, upstreams, respond, redirect, aggregate, found upstream and "
          "aggregate"]),
        ("- match: {prefix: /d}\n  aggregate: {a: {upstream: users, path: /x}}\n  strip_prefix: true\n",
         ["9: routes[0].strip_prefix: strip_prefix changes the path sent upstream, and this route has no upstream"]),
        ("- match: {prefix: /d}\n  upstream: users\n"
         "  compress: {types: [json], encodings: [deflate], level: {gzip: 0}}\n",
         ["9: routes[0].compress.types[0]: 'json' is not a media type such as application/json, text/* or "
          "application/*+json",
          "9: routes[0].compress.encodings[0]: expected one of zstd, br, gzip, got string 'deflate'",
          "9: routes[0].compress.level.gzip: must be from 1 to 9, got 0"]),
        ("- match: {prefix: /d}\n  upstream: users\n  compress: {level: {zstd: 22}}\n",
         ["9: routes[0].compress.level.zstd: must be from 1 to 19, got 22"]),
        ("- match: {prefix: /d}\n  respond: {status: 200}\n  compress: true\n",
         ["9: routes[0].compress: compress applies to upstream and aggregated responses; this route answers with a "
          "fixed response"]),
    ],
)
def test_mistakes_are_reported_with_line_and_key_path(tmp_path: Path, routes: str, expected: list[str]) -> None:
    assert problems(tmp_path, routes) == expected


def test_template_encoding_by_position() -> None:
    t = parse("/u/{id}/{claim.sub}?p={id}&q={query.q}&t={profile.teams.0.id}", {"profile"}, is_path=True)
    assert [r.kind for r in t.refs] == ["param", "claim", "param", "query", "call"]
    assert t.calls == frozenset({"profile"})
    values = {"{id}": "a%20b&c", "{claim.sub}": "x/y z", "{query.q}": "1&evil=2", "{profile.teams.0.id}": "t#1"}

    def value(ref: Ref) -> str:
        return values[ref.text]

    assert t.render(value) == "/u/a%20b&c/x%2Fy%20z?p=a%20b%26c&q=1%26evil%3D2&t=t%231"
    header = parse("Bearer {claim.token}", set(), is_path=False)
    assert header.render(lambda ref: "abc") == "Bearer abc"


def test_scalars_and_lookups() -> None:
    assert [scalar_text(v) for v in ("s", 3, 2.5, True, False, None, [], {})] == [
        "s", "3", "2.5", "true", "false", None, None, None]
    assert lookup({"a": {"b": [{"c": 1}]}}, ("a", "b", "0", "c")) == 1
    assert lookup({"a": []}, ("a", "0")) is None and lookup("x", ("a",)) is None
    assert issubclass(Missing, Exception)


@pytest.mark.parametrize(
    ("accept", "offered", "chosen"),
    [
        ("gzip, br", ("zstd", "br", "gzip"), "br"),
        ("gzip, br", ("gzip", "br"), "gzip"),
        ("br;q=0.9, gzip", ("br", "gzip"), "gzip"),
        ("*;q=0.1, gzip;q=0.05", ("br", "gzip"), "br"),
        ("br;q=0, *", ("br", "gzip"), "gzip"),
        ("identity;q=1, *;q=0", ("br", "gzip"), None),
        ("br;level=5", ("br",), None),
        ("gzip;q=1.5", ("gzip",), None),
        (" , ,gzip ;q=0.3", ("gzip",), "gzip"),
    ],
)
def test_negotiation(accept: str, offered: tuple[str, ...], chosen: str | None) -> None:
    assert negotiate(accept.encode(), offered) == chosen


def test_type_patterns() -> None:
    m = TypeMatcher(["text/*", "application/json", "application/*+json"])
    assert m.match(b"text/html; charset=utf-8") and m.match(b"Application/JSON")
    assert m.match(b"application/problem+json") and not m.match(b"application/jsonx")
    assert not m.match(b"image/png") and not m.match(b"text") and not m.match(b"")


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"a": [1, 2.5e3, true, null, "x\\u00e9"]}', True),
        (b' [ ] \n', True),
        ('{"name": "Zoë"}'.encode(), True),
        (b'"just a string"', True),
        (b'{"a": "\xff"}', False),  # not UTF-8
        (b'[1, 2,]', False),
        (b'{"a": 01}', False),
        (b'{"a": 1} {"b": 2}', False),
        (b'', False),
        (b'hello world\n', False),
        (b'{"a": "\x01"}', False),
    ],
)
def test_answers_checked_as_json_without_building_them(body: bytes, ok: bool) -> None:
    from fastgw.aggregate.responder import _is_json

    assert _is_json(body) is ok


def test_zstd_compressors_are_reused_across_responses_with_frames_closed() -> None:
    from fastgw.compress import _STREAMS, _zstd_idle, zstd

    bodies = [b"first " * 500, b"second " * 700, b""]
    seen = set()
    for body in bodies:
        compress, finish = _STREAMS["zstd"](5, None)
        seen.add(id(compress.__self__))
        data = compress(body) + finish()
        assert zstd.decompress(data) == body
    assert len(seen) == 1 and len(_zstd_idle[5]) == 1  # one compressor served all three


@pytest.mark.parametrize(("length", "bits"), [(None, 15), (100_000, 15), (16_122, 15), (16_121, 14), (4096, 13),
                                              (3834, 13), (3833, 12), (1, 9)])
def test_gzip_window_shrinks_with_the_body_as_nginx_does(length: int | None, bits: int) -> None:
    from fastgw.compress import _window_bits

    assert _window_bits(length, 15, 9, 262) == bits


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=40_000), declared=st.one_of(st.none(), st.integers(1, 50_000)), coding=st.sampled_from(
    ["gzip", "br"]))
def test_compressed_bodies_read_back_whatever_length_was_declared(body: bytes, declared: int | None,
                                                                 coding: str) -> None:
    """The window follows the declared length, but a body of any size still reads back whole
    (a smaller window only finds fewer matches)."""
    import zlib

    import brotli

    from fastgw.compress import _STREAMS, _WHOLE

    compress, finish = _STREAMS[coding](6, declared)
    data = compress(body[: len(body) // 2]) + compress(body[len(body) // 2:]) + finish()
    whole = _WHOLE[coding](body, 6)
    for out in (data, whole):
        assert (zlib.decompress(out, 31) if coding == "gzip" else brotli.decompress(out)) == body


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("  auth: main\n", []),
        ("", ["8: routes[0].aggregate.a.path: reads token claims, and this route has no auth: add a jwt or "
              "introspection auth"]),
        ("  auth: [main, keys]\n", ["9: routes[0].aggregate.a.path: reads token claims, and this route has an auth "
                                     "that gives no token claims (api_key, mtls): add a jwt or introspection auth"]),
    ],
)
def test_claims_in_templates_need_an_auth_that_gives_claims(tmp_path: Path, auth: str, expected: list[str]) -> None:
    routes = '- match: {prefix: /d}\n' + auth + '  aggregate: {a: {upstream: users, path: "/u/{claim.sub}"}}\n'
    if expected:
        assert problems(tmp_path, routes) == expected
    else:
        load_text(tmp_path, routes)
