"""Route matching (DESIGN §3 step 2, §8): the concrete cases run against the compiled
`fastgw._core.RouteTrie` and the plain-Python model `fastgw._pycore.trie.RouteTrie`; a property test
checks the two give the same answer on random route tables and requests."""
from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgw._core as core
import fastgw._pycore.trie as pycore


@pytest.fixture(params=[core, pycore], ids=["core", "pycore"])
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    return request.param


def build(impl: types.ModuleType, *routes: tuple[str, dict[str, Any]]) -> Any:
    trie = impl.RouteTrie()
    for target, kwargs in routes:
        trie.add(target, **kwargs)
    return trie


def hit(trie: Any, path: bytes, method: bytes = b"GET", host: bytes = b"gw.test") -> Any:
    """The target of a 200, or the status otherwise, so tables of cases stay readable."""
    m = trie.match(host, method, path)
    return m.target if m.status == 200 else m.status


# --- paths -----------------------------------------------------------------------------------

def test_exact_path(impl: types.ModuleType) -> None:
    t = build(impl, ("a", {"path": "/a"}), ("a/", {"path": "/a/"}), ("root", {"path": "/"}))
    assert hit(t, b"/a") == "a"
    assert hit(t, b"/a/") == "a/"
    assert hit(t, b"/") == "root"
    assert hit(t, b"/A") == 404
    assert hit(t, b"/a/b") == 404
    assert hit(t, b"/ab") == 404
    m = t.match(b"h", b"GET", b"/a")
    assert (m.status, m.params, m.allow, m.prefix_len) == (200, None, None, 0)


def test_prefix_matches_whole_segments(impl: types.ModuleType) -> None:
    t = build(impl, ("api", {"prefix": "/api"}))
    assert hit(t, b"/api") == "api"
    assert hit(t, b"/api/") == "api"
    assert hit(t, b"/api/x/y") == "api"
    assert hit(t, b"/apix") == 404
    assert hit(t, b"/ap") == 404
    assert hit(t, b"/") == 404


def test_prefix_trailing_slash_is_dropped_and_prefix_len_excludes_it(impl: types.ModuleType) -> None:
    t = build(impl, ("api", {"prefix": "/api/v1/"}), ("root", {"prefix": "/"}))
    m = t.match(b"h", b"GET", b"/api/v1")
    assert (m.status, m.target, m.prefix_len, m.params) == (200, "api", 7, None)
    assert t.match(b"h", b"GET", b"/api/v1/x").prefix_len == 7
    m = t.match(b"h", b"GET", b"/other")
    assert (m.target, m.prefix_len) == ("root", 0)
    with pytest.raises(ValueError, match="duplicate"):
        t.add("again", prefix="/api/v1")


def test_longest_prefix_wins(impl: types.ModuleType) -> None:
    t = build(impl, ("root", {"prefix": "/"}), ("a", {"prefix": "/a"}), ("ab", {"prefix": "/a/b"}))
    assert hit(t, b"/a/b/c") == "ab"
    assert hit(t, b"/a/b") == "ab"
    assert hit(t, b"/a/bc") == "a"
    assert hit(t, b"/a") == "a"
    assert hit(t, b"/x") == "root"


def test_params_capture_one_non_empty_segment(impl: types.ModuleType) -> None:
    t = build(impl, ("user", {"path": "/users/{id}"}), ("post", {"path": "/users/{uid}/posts/{pid}"}))
    m = t.match(b"h", b"GET", b"/users/42")
    assert (m.status, m.target, m.params) == (200, "user", {"id": "42"})
    m = t.match(b"h", b"GET", b"/users/a%20b/posts/7")
    assert (m.target, m.params) == ("post", {"uid": "a%20b", "pid": "7"})
    assert hit(t, b"/users/") == 404
    assert hit(t, b"/users") == 404
    assert hit(t, b"/users/1/2") == 404
    assert hit(t, b"/users//posts/7") == 404


def test_param_routes_get_fresh_params(impl: types.ModuleType) -> None:
    t = build(impl, ("user", {"path": "/u/{id}"}))
    first = t.match(b"h", b"GET", b"/u/1")
    second = t.match(b"h", b"GET", b"/u/2")
    assert first.params == {"id": "1"} and second.params == {"id": "2"}


def test_catch_all(impl: types.ModuleType) -> None:
    t = build(impl, ("static", {"path": "/static/{rest*}"}), ("all", {"path": "/{p*}", "methods": ["POST"]}))
    assert t.match(b"h", b"GET", b"/static/css/a.css").params == {"rest": "css/a.css"}
    assert t.match(b"h", b"GET", b"/static/").params == {"rest": ""}
    assert t.match(b"h", b"GET", b"/static/x/").params == {"rest": "x/"}
    assert hit(t, b"/static") == 405
    assert t.match(b"h", b"POST", b"/static").params == {"p": "static"}
    assert t.match(b"h", b"POST", b"/").params == {"p": ""}


def test_precedence_exact_then_param_then_prefix(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("prefix", {"prefix": "/users"}),
        ("param", {"path": "/users/{id}"}),
        ("exact", {"path": "/users/me"}),
        ("catch", {"path": "/users/{rest*}"}),
    )
    assert hit(t, b"/users/me") == "exact"
    assert hit(t, b"/users/42") == "param"
    assert hit(t, b"/users/42/x") == "catch"
    assert hit(t, b"/users") == "prefix"


def test_literal_segment_beats_param_segment_with_backtracking(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("lit-first", {"path": "/a/{x}/c"}),
        ("param-first", {"path": "/{y}/b/d"}),
        ("lit-both", {"path": "/a/b/{z}"}),
    )
    assert hit(t, b"/a/b/c") == "lit-both"
    assert hit(t, b"/a/q/c") == "lit-first"
    # /a/b/d: the literal `a` branch ends in /a/b/{z}; `{y}/b/d` is never reached
    assert hit(t, b"/a/b/d") == "lit-both"
    # /q/b/d: no literal `q` child, so the param branch is taken
    assert t.match(b"h", b"GET", b"/q/b/d").params == {"y": "q"}
    # /a/x/d: the literal branch fails deeper, backtrack to `{y}`, which fails on `b`
    assert hit(t, b"/a/x/d") == 404


def test_param_beats_catch_all_at_same_segment(impl: types.ModuleType) -> None:
    t = build(impl, ("catch", {"path": "/a/{r*}"}), ("param", {"path": "/a/{x}/{y}"}))
    assert hit(t, b"/a/1/2") == "param"
    assert hit(t, b"/a/1") == "catch"
    assert hit(t, b"/a/1/2/3") == "catch"


# --- methods ---------------------------------------------------------------------------------

def test_method_falls_through_to_next_candidate(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("exact-get", {"path": "/a/b", "methods": ["GET"]}),
        ("param-post", {"path": "/a/{x}", "methods": ["POST"]}),
        ("prefix-any", {"prefix": "/a"}),
    )
    assert hit(t, b"/a/b", b"GET") == "exact-get"
    assert hit(t, b"/a/b", b"POST") == "param-post"
    assert hit(t, b"/a/b", b"DELETE") == "prefix-any"


def test_405_lists_union_of_methods_of_matching_patterns(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("exact", {"path": "/a/b", "methods": ["PUT", "GET"]}),
        ("param", {"path": "/a/{x}", "methods": ["POST", "GET"]}),
        ("prefix", {"prefix": "/a", "methods": ["DELETE"]}),
        ("other", {"path": "/z", "methods": ["PATCH"]}),
    )
    m = t.match(b"h", b"OPTIONS", b"/a/b")
    assert (m.status, m.target, m.params, m.allow, m.prefix_len) == (
        405, None, None, b"DELETE, GET, POST, PUT", 0)
    assert t.match(b"h", b"OPTIONS", b"/a/c").allow == b"DELETE, GET, POST"
    assert t.match(b"h", b"OPTIONS", b"/a").allow == b"DELETE"
    assert t.match(b"h", b"OPTIONS", b"/z").allow == b"PATCH"
    assert t.match(b"h", b"OPTIONS", b"/y").status == 404


def test_get_does_not_imply_head_and_methods_are_case_sensitive(impl: types.ModuleType) -> None:
    t = build(impl, ("a", {"path": "/a", "methods": ["GET"]}))
    assert hit(t, b"/a", b"HEAD") == 405
    assert hit(t, b"/a", b"get") == 405


def test_routes_on_one_pattern_split_by_method(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("read", {"path": "/u/{id}", "methods": ["GET"]}),
        ("write", {"path": "/u/{uid}", "methods": ["PUT"]}),
    )
    assert t.match(b"h", b"GET", b"/u/1").params == {"id": "1"}
    m = t.match(b"h", b"PUT", b"/u/1")
    assert (m.target, m.params) == ("write", {"uid": "1"})
    assert t.match(b"h", b"DELETE", b"/u/1").allow == b"GET, PUT"


# --- hosts -----------------------------------------------------------------------------------

def host_table(impl: types.ModuleType) -> Any:
    return build(
        impl,
        ("any", {"path": "/a"}),
        ("exact", {"path": "/a", "host": "api.example.com"}),
        ("wild", {"path": "/a", "host": "*.example.com"}),
        ("deeper-wild", {"path": "/a", "host": "*.eu.example.com"}),
        ("v6", {"path": "/a", "host": "[::1]"}),
    )


@pytest.mark.parametrize(("host", "expected"), [
    (b"api.example.com", "exact"),
    (b"API.Example.COM", "exact"),
    (b"api.example.com:8443", "exact"),
    (b"api.example.com.", "exact"),
    (b"api.example.com.:80", "exact"),
    (b"x.example.com", "wild"),
    (b"x.y.example.com", "wild"),
    (b"x.eu.example.com", "deeper-wild"),
    (b"eu.example.com", "wild"),
    (b"example.com", "any"),
    (b".example.com", "any"),
    (b"other.test", "any"),
    (b"", "any"),
    (b"[::1]:8080", "v6"),
    (b"[::1]", "v6"),
    (b"[::2]:8080", "any"),
])
def test_host_lookup(impl: types.ModuleType, host: bytes, expected: str) -> None:
    assert hit(host_table(impl), b"/a", host=host) == expected


def test_host_specific_route_falls_back_to_host_less_routes(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("api-get", {"path": "/a", "host": "api.test", "methods": ["GET"]}),
        ("any-post", {"path": "/a", "methods": ["POST"]}),
        ("any-b", {"path": "/b"}),
    )
    assert hit(t, b"/a", b"GET", b"api.test") == "api-get"
    assert hit(t, b"/a", b"POST", b"api.test") == "any-post"
    assert hit(t, b"/b", b"GET", b"api.test") == "any-b"
    # the first 405 (from the host's own routes) gives Allow
    m = t.match(b"api.test", b"PUT", b"/a")
    assert (m.status, m.allow) == (405, b"GET")
    assert t.match(b"other.test", b"PUT", b"/a").allow == b"POST"


def test_first_405_in_host_order_gives_allow(impl: types.ModuleType) -> None:
    t = build(
        impl,
        ("wide", {"path": "/a", "host": "*.test", "methods": ["PUT"]}),
        ("narrow", {"path": "/a", "host": "*.x.test", "methods": ["POST"]}),
        ("exact", {"path": "/a", "host": "y.x.test", "methods": ["PATCH"]}),
        ("any", {"path": "/a", "methods": ["GET"]}),
    )
    assert t.match(b"y.x.test", b"DELETE", b"/a").allow == b"PATCH"
    assert t.match(b"z.x.test", b"DELETE", b"/a").allow == b"POST"
    assert t.match(b"z.test", b"DELETE", b"/a").allow == b"PUT"
    assert hit(t, b"/a", b"PUT", b"y.x.test") == "wide"
    assert hit(t, b"/a", b"GET", b"y.x.test") == "any"


def test_host_routes_only_404_when_nothing_matches(impl: types.ModuleType) -> None:
    t = build(impl, ("x", {"path": "/a", "host": "x.test"}))
    assert hit(t, b"/a", host=b"x.test") == "x"
    assert hit(t, b"/a", host=b"y.test") == 404


# --- RouteMatch --------------------------------------------------------------------------------

def test_route_match_is_read_only(impl: types.ModuleType) -> None:
    m = build(impl, ("a", {"path": "/a"})).match(b"h", b"GET", b"/a")
    with pytest.raises(AttributeError):
        m.status = 404


def test_route_match_cannot_be_built_from_python() -> None:
    with pytest.raises(TypeError):
        core.RouteMatch()


def test_answers_without_params_are_prebuilt_and_shared() -> None:
    t = build(core, ("a", {"path": "/a"}), ("p", {"prefix": "/p"}), ("g", {"path": "/g", "methods": ["GET"]}))
    assert t.match(b"h", b"GET", b"/a") is t.match(b"h", b"GET", bytes(bytearray(b"/a")))
    assert t.match(b"h", b"GET", b"/p/1") is t.match(b"h", b"GET", b"/p/2")
    assert t.match(b"h", b"GET", b"/x") is t.match(b"h", b"POST", b"/y")
    assert t.match(b"h", b"POST", b"/g") is t.match(b"h", b"PUT", b"/g")


def test_non_origin_path_is_404(impl: types.ModuleType) -> None:
    t = build(impl, ("root", {"prefix": "/"}))
    assert hit(t, b"") == 404
    assert hit(t, b"*") == 404


# --- config errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {},
    {"path": "/a", "prefix": "/a"},
    {"path": "a"},
    {"path": ""},
    {"path": "/a{b}"},
    {"path": "/{a}b"},
    {"path": "/{}"},
    {"path": "/{1a}"},
    {"path": "/{a-b}"},
    {"path": "/{a"},
    {"path": "/a}"},
    {"path": "/{r*}/x"},
    {"path": "/{a}/{a}"},
    {"path": "/{a}/{a*}"},
    {"path": "/a/../b"},
    {"path": "/a//b"},
    {"path": "/a%7e"},
    {"path": "/a%3a"},
    {"path": "/a b"},
    {"path": "/caf\u00e9"},
    {"path": "/a%2Fb"},
    {"path": "/" + "/".join(["s"] * 65)},
    {"prefix": "/{a}"},
    {"prefix": "/a{b}"},
    {"prefix": "api"},
    {"prefix": "/a/./b"},
    {"path": "/a", "methods": []},
    {"path": "/a", "methods": ["get"]},
    {"path": "/a", "methods": ["GET POST"]},
    {"path": "/a", "methods": [""]},
    {"path": "/a", "host": "example.com:80"},
    {"path": "/a", "host": ""},
    {"path": "/a", "host": "*"},
    {"path": "/a", "host": "a.*.com"},
    {"path": "/a", "host": "http://x"},
    {"path": "/a", "host": "*.example.com:80"},
])
def test_bad_patterns_are_rejected(impl: types.ModuleType, kwargs: dict[str, Any]) -> None:
    t = impl.RouteTrie()
    with pytest.raises(ValueError):
        t.add("x", **kwargs)
    assert t.match(b"h", b"GET", b"/a").status == 404


@pytest.mark.parametrize("kwargs", [
    {"path": 1},
    {"prefix": b"/a"},
    {"path": "/a", "methods": "GET"},
    {"path": "/a", "host": b"x.test"},
])
def test_wrong_types_are_rejected(impl: types.ModuleType, kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        impl.RouteTrie().add("x", **kwargs)


@pytest.mark.parametrize(("first", "second"), [
    ({"path": "/a"}, {"path": "/a"}),
    ({"path": "/a"}, {"path": "/a", "methods": ["GET"]}),
    ({"path": "/a", "methods": ["GET"]}, {"path": "/a"}),
    ({"path": "/a", "methods": ["GET", "POST"]}, {"path": "/a", "methods": ["POST", "PUT"]}),
    ({"path": "/u/{id}"}, {"path": "/u/{uid}"}),
    ({"path": "/u/{r*}", "methods": ["GET"]}, {"path": "/u/{s*}", "methods": ["GET"]}),
    ({"prefix": "/a"}, {"prefix": "/a/"}),
    ({"prefix": "/"}, {"prefix": "/"}),
    ({"path": "/a", "host": "x.test"}, {"path": "/a", "host": "X.Test."}),
    ({"path": "/a", "host": "*.x.test"}, {"path": "/a", "host": "*.X.TEST"}),
])
def test_duplicates_are_rejected_and_leave_the_trie_unchanged(
        impl: types.ModuleType, first: dict[str, Any], second: dict[str, Any]) -> None:
    t = impl.RouteTrie()
    t.add("first", **first)
    with pytest.raises(ValueError, match="duplicate"):
        t.add("second", **second)
    path = (first.get("path") or first["prefix"]).replace("{id}", "1").replace("{r*}", "r").encode()
    host = b"x.test" if first.get("host") == "x.test" else b"a.x.test"
    assert hit(t, path, host=host) == "first"
    assert t.match(host, b"TRACE", path).allow in (None, b"GET", b"GET, POST")


@pytest.mark.parametrize(("first", "second"), [
    ({"path": "/a", "methods": ["GET"]}, {"path": "/a", "methods": ["POST"]}),
    ({"path": "/a"}, {"prefix": "/a"}),
    ({"path": "/a"}, {"path": "/a", "host": "x.test"}),
    ({"path": "/a", "host": "x.test"}, {"path": "/a", "host": "*.x.test"}),
    ({"path": "/u/{id}"}, {"path": "/u/{id*}"}),
    ({"path": "/u/{id}"}, {"path": "/u/me"}),
])
def test_distinct_routes_coexist(impl: types.ModuleType, first: dict[str, Any], second: dict[str, Any]) -> None:
    t = impl.RouteTrie()
    t.add("first", **first)
    t.add("second", **second)


def test_freeze_refuses_later_routes(impl: types.ModuleType) -> None:
    t = build(impl, ("a", {"path": "/a"}))
    t.freeze()
    with pytest.raises(RuntimeError):
        t.add("b", path="/b")
    assert hit(t, b"/a") == "a"
    assert hit(t, b"/b") == 404


# --- property: compiled trie == model ----------------------------------------------------------

_PATH_SEGMENTS = ["a", "a", "b", "{x}", "{y}", "{r*}", ""]
_PREFIX_SEGMENTS = ["a", "b"]
_METHODS = st.one_of(st.none(), st.sets(st.sampled_from(["GET", "POST", "PUT"]), min_size=1).map(sorted))
_HOSTS = st.sampled_from([None, None, "a.test", "*.a.test", "*.x.a.test"])

_routes = st.one_of(
    st.fixed_dictionaries({
        "path": st.lists(st.sampled_from(_PATH_SEGMENTS), max_size=3).map(lambda s: "/" + "/".join(s)),
        "methods": _METHODS,
        "host": _HOSTS,
    }),
    st.fixed_dictionaries({
        "prefix": st.builds(lambda s, slash: "/" + "/".join(s) + slash,
                            st.lists(st.sampled_from(_PREFIX_SEGMENTS), max_size=2), st.sampled_from(["", "/"])),
        "methods": _METHODS,
        "host": _HOSTS,
    }),
)
_requests = st.tuples(
    st.sampled_from([b"a.test", b"A.TEST:81", b"x.a.test", b"y.x.a.test", b"Y.X.A.TEST.", b"b.test"]),
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]),
    st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4).map(lambda s: ("/" + "/".join(s)).encode()),
)


def _answer(m: Any) -> tuple[object, ...]:
    return (m.status, m.target, m.params, m.allow, m.prefix_len)


def _probes(kwargs: dict[str, Any]) -> list[tuple[bytes, bytes, bytes]]:
    """Requests aimed at one route, so that random tables get hits, method misses and several
    patterns competing for one path far more often than random paths would."""
    pattern = kwargs.get("path") or kwargs["prefix"].rstrip("/") + "/b"
    path = pattern.replace("{x}", "a").replace("{y}", "b").replace("{r*}", "a/b").encode()
    hosts = [b"a.test", b"y.x.a.test"]
    return [(h, m, path) for h in hosts for m in (b"GET", b"POST", b"DELETE")]


@settings(max_examples=300, deadline=None)
@given(st.lists(_routes, max_size=10), st.lists(_requests, min_size=1, max_size=12))
def test_compiled_trie_agrees_with_model(
        routes: list[dict[str, Any]], requests: list[tuple[bytes, bytes, bytes]]) -> None:
    fast, model = core.RouteTrie(), pycore.RouteTrie()
    for i, kwargs in enumerate(routes):
        outcomes = []
        for trie in (fast, model):
            try:
                trie.add(i, **kwargs)
                outcomes.append(None)
            except ValueError as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1], kwargs
        requests += _probes(kwargs)
    for host, method, path in requests:
        assert _answer(fast.match(host, method, path)) == _answer(model.match(host, method, path)), (host, method, path)
