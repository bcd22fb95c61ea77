"""Path normalization (DESIGN §8): the same table runs against the compiled `fastgw._core` and the
plain-Python model `fastgw._pycore.path`, and a property test checks one against the other."""
from __future__ import annotations

import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgw._core as core
import fastgw._pycore.path as pycore


@pytest.fixture(params=[core, pycore], ids=["core", "pycore"])
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    return request.param


NORMALIZED = [
    # already normal
    (b"/", b"/"),
    (b"/a/b", b"/a/b"),
    (b"/a/", b"/a/"),
    (b"/A/b", b"/A/b"),
    (b"/a;b=c/d;e", b"/a;b=c/d;e"),
    (b"/.well-known/x", b"/.well-known/x"),
    (b"/a/..b/c.", b"/a/..b/c."),
    (b"/...", b"/..."),
    (b"/a%3A", b"/a%3A"),
    (b"/%25", b"/%25"),
    (b"/a?b", b"/a?b"),
    # unreserved escapes decoded, others upper-cased
    (b"/a%7e", b"/a~"),
    (b"/a%7E", b"/a~"),
    (b"/%41", b"/A"),
    (b"/%2d%2E%5f%30%7a", b"/-._0z"),
    (b"/a%3a", b"/a%3A"),
    (b"/%e2%82%ac", b"/%E2%82%AC"),
    (b"/%2541", b"/%2541"),
    (b"/%20x", b"/%20x"),
    (b"/a%2e", b"/a."),
    # dot segments (RFC 3986 §5.2.4), decoded dots included
    (b"/a/./b", b"/a/b"),
    (b"/a/b/../c", b"/a/c"),
    (b"/a/.", b"/a/"),
    (b"/a/..", b"/"),
    (b"/.", b"/"),
    (b"/./", b"/"),
    (b"/a/b/./", b"/a/b/"),
    (b"/a/../b/../c", b"/c"),
    (b"/a/%2E/b", b"/a/b"),
    (b"/a/%2e%2e/b", b"/b"),
    (b"/a/.%2E", b"/"),
    # repeated slashes merged, after dot segments
    (b"//a///b", b"/a/b"),
    (b"/a//../b", b"/a/b"),
    (b"//", b"/"),
    (b"/a//", b"/a/"),
    (b"//..", b"/"),
]

REJECTED = [
    b"",
    b"a",
    b"*",
    b"http://x/a",
    b"/a b",
    b"/a\tb",
    b"/a\x00",
    b"/a\x7f",
    b"/\x80",
    b"/caf\xc3\xa9",
    b"/a#b",
    b"/#",
    b"/a\\b",
    b"/%",
    b"/a%4",
    b"/%zz",
    b"/%4g",
    b"/%g4",
    b"/%2F",
    b"/a%2fb",
    b"/a%5C",
    b"/a%5c",
    b"/%00",
    b"/..",
    b"/../a",
    b"/a/../..",
    b"/%2e%2e/x",
    b"/a/%2E%2E/%2e%2e",
    b"/./..",
    b"/a/./../../b",
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_normalizes(impl: types.ModuleType, raw: bytes, expected: bytes) -> None:
    assert impl.normalize_path(raw) == expected


@pytest.mark.parametrize("raw", REJECTED)
def test_rejects(impl: types.ModuleType, raw: bytes) -> None:
    with pytest.raises(impl.PathError):
        impl.normalize_path(raw)


def test_path_error_is_value_error(impl: types.ModuleType) -> None:
    assert issubclass(impl.PathError, ValueError)


@pytest.mark.parametrize("raw", [b"/", b"/a/b/", b"/api/v1/users/42", b"/a%3A%20b", b"/.well-known/x"])
def test_already_normal_path_is_returned_as_is(raw: bytes) -> None:
    fresh = bytes(bytearray(raw))
    assert core.normalize_path(fresh) is fresh


@pytest.mark.parametrize("raw", [b"/a/./b", b"//a", b"/a%7e", b"/a%3a"])
def test_changed_path_is_a_new_object(raw: bytes) -> None:
    assert core.normalize_path(raw) is not raw


# Biased towards what makes normalization interesting: dots, slashes and escapes; the pieces that
# must be refused are rarer, so that most generated paths get as far as dot and slash handling.
_VALID = ["/"] * 6 + [".", ".", "..", "a", "b", "~", ";", "%2e", "%2E", "%7e", "%41", "%3a", "%3A",
                      "%20", "%25", "2", "e", "F"]
_INVALID = ["%2f", "%5C", "%00", "%", "%4", "%zz", "#", "\\", " ", "\x80"]
_PIECES = _VALID * 4 + _INVALID
_raw_paths = st.builds(
    lambda lead, pieces: (lead + "".join(pieces)).encode("latin-1"),
    st.sampled_from(["/"] * 9 + [""]),
    st.lists(st.sampled_from(_PIECES), max_size=12),
)


def _outcome(normalize: object, raw: bytes) -> bytes | type:
    try:
        return normalize(raw)  # type: ignore[operator]
    except ValueError as e:
        return type(e)


@settings(max_examples=300, deadline=None)
@given(_raw_paths)
def test_core_agrees_with_model(raw: bytes) -> None:
    got = _outcome(core.normalize_path, raw)
    want = _outcome(pycore.normalize_path, raw)
    if want is pycore.PathError:
        assert got is core.PathError
    else:
        assert got == want


@settings(max_examples=300, deadline=None)
@given(_raw_paths)
def test_normalizing_is_idempotent(raw: bytes) -> None:
    try:
        once = core.normalize_path(raw)
    except core.PathError:
        return
    assert core.normalize_path(once) is once
    assert pycore.normalize_path(pycore.normalize_path(raw)) == pycore.normalize_path(raw)
