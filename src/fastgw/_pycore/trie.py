"""Plain-Python twin of `fastgw._core.RouteTrie`: a list of routes scanned in precedence order.

It states the routing rules of DESIGN §8 directly (which routes match, which one wins), with none
of the compiled trie's structure, so that property tests can catch the trie's shortcuts going
wrong and the micro-benchmark has an honest baseline.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastgw._pycore.path import PathError, normalize_path

MAX_SEGMENTS = 64

_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
_METHOD_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
_HOST_RE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_IPV6_RE = re.compile(r"\[[0-9a-f:.]+\]")

_LITERAL, _PARAM, _CATCHALL = 0, 1, 2
_EXACT, _PATTERN, _PREFIX = 0, 1, 2


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Same attributes as the compiled RouteMatch; frozen for the same reason (results are shared)."""

    status: int
    target: object = None
    params: dict[str, str] | None = None
    allow: bytes | None = None
    prefix_len: int = 0


_NOT_FOUND = RouteMatch(404)

HostKey = tuple[bool, bytes | None]
Segment = tuple[int, object]


@dataclass(frozen=True, slots=True)
class _Route:
    target: object
    kind: int
    raw: bytes
    segments: tuple[Segment, ...]
    methods: frozenset[bytes] | None
    host: HostKey

    def shape(self) -> tuple[object, ...]:
        """What makes two routes the same pattern: param names do not change which paths match."""
        return (self.host, self.kind, self.raw if self.kind != _PATTERN
                else tuple((k, None if k != _LITERAL else v) for k, v in self.segments))

    def precedence(self) -> tuple[object, ...]:
        """Exact first, then patterns (literal < param < catch-all, segment by segment), then
        prefixes longest first."""
        if self.kind == _EXACT:
            return (0,)
        if self.kind == _PATTERN:
            return (1, tuple(kind for kind, _ in self.segments))
        return (2, -len(self.raw))

    def match_path(self, path: bytes) -> dict[str, str] | None:
        """The params captured if this route's pattern matches `path`, else None."""
        if self.kind == _EXACT:
            return {} if path == self.raw else None
        if self.kind == _PREFIX:
            hit = self.raw == b"/" or path == self.raw or path.startswith(self.raw + b"/")
            return {} if hit else None
        parts = path[1:].split(b"/")
        pattern = self.segments
        if pattern[-1][0] == _CATCHALL:
            if len(parts) < len(pattern):
                return None
            parts = parts[:len(pattern) - 1] + [b"/".join(parts[len(pattern) - 1:])]
        elif len(parts) != len(pattern):
            return None
        params: dict[str, str] = {}
        for (kind, value), part in zip(pattern, parts, strict=True):
            if kind == _LITERAL and part != value:
                return None
            if kind == _PARAM and part == b"":
                return None
            if kind != _LITERAL:
                params[str(value)] = part.decode("latin-1")
        return params

    def answer(self, params: dict[str, str]) -> RouteMatch:
        prefix_len = 0 if self.kind != _PREFIX or self.raw == b"/" else len(self.raw)
        return RouteMatch(200, self.target, params or None, None, prefix_len)


class RouteTrie:
    """Same API and answers as the compiled RouteTrie."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._frozen = False

    def add(self, target: object, *, path: str | None = None, prefix: str | None = None,
            methods: Iterable[str] | None = None, host: str | None = None) -> None:
        if self._frozen:
            raise RuntimeError("RouteTrie is frozen: routes are added only while loading config")
        if (path is None) == (prefix is None):
            raise ValueError("a route needs exactly one of path or prefix")
        meths = _parse_methods(methods)
        host_key = _parse_host(host)
        if path is not None:
            raw, segments = _parse_path(path)
            kind = _PATTERN if any(k != _LITERAL for k, _ in segments) else _EXACT
        else:
            raw, segments = _parse_prefix(prefix)
            kind = _PREFIX
        route = _Route(target, kind, raw, segments, meths, host_key)
        for other in self._routes:
            if other.shape() == route.shape() and _overlap(other.methods, route.methods):
                raise ValueError(f"duplicate route: {path or prefix!r} overlaps an earlier route")
        self._routes.append(route)

    def freeze(self) -> None:
        self._frozen = True

    def match(self, host: bytes, method: bytes, path: bytes) -> RouteMatch:
        if not path.startswith(b"/"):
            return _NOT_FOUND
        first_405 = None
        for host_key in self._host_candidates(host):
            answer = self._match_host(host_key, method, path)
            if answer.status == 200:
                return answer
            if answer.status == 405 and first_405 is None:
                first_405 = answer
        return first_405 or _NOT_FOUND

    def _host_candidates(self, host: bytes) -> list[HostKey]:
        name = _host_key(host)
        suffixes = {r.host[1] for r in self._routes if r.host[0]}
        matching = sorted((s for s in suffixes if s is not None and name.endswith(s) and len(name) > len(s)),
                          key=len, reverse=True)
        return [(False, name)] + [(True, s) for s in matching] + [(False, None)]

    def _match_host(self, host_key: HostKey, method: bytes, path: bytes) -> RouteMatch:
        hits = [(r, params) for r in self._routes if r.host == host_key
                for params in [r.match_path(path)] if params is not None]
        hits.sort(key=lambda hit: hit[0].precedence())
        for route, params in hits:
            if route.methods is None or method in route.methods:
                return route.answer(params)
        if not hits:
            return _NOT_FOUND
        allow: set[bytes] = set()
        for route, _ in hits:
            allow |= route.methods or frozenset()
        return RouteMatch(405, allow=b", ".join(sorted(allow)))


def _host_key(host: bytes) -> bytes:
    name = host.lower()
    if name.startswith(b"["):
        end = name.find(b"]")
        if end >= 0:
            name = name[:end + 1]
    else:
        colon = name.find(b":")
        if colon >= 0:
            name = name[:colon]
    if name.endswith(b"."):
        name = name[:-1]
    return name


def _overlap(a: frozenset[bytes] | None, b: frozenset[bytes] | None) -> bool:
    return a is None or b is None or bool(a & b)


def _parse_methods(methods: Iterable[str] | None) -> frozenset[bytes] | None:
    if methods is None:
        return None
    if isinstance(methods, (str, bytes)):
        raise TypeError(f"methods must be a list of method names, not {methods!r}")
    out = set()
    for m in methods:
        if not isinstance(m, str) or _METHOD_RE.fullmatch(m) is None:
            raise ValueError(f"invalid method {m!r}: expected an upper-case HTTP method such as 'GET'")
        out.add(m.encode("ascii"))
    if not out:
        raise ValueError("methods is empty: use None for a route taking any method")
    return frozenset(out)


def _parse_host(host: str | None) -> HostKey:
    if host is None:
        return (False, None)
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    name = host.lower().removesuffix(".")
    if name.startswith("*.") and _HOST_RE.fullmatch(name[2:]):
        return (True, name[1:].encode("ascii"))
    if _HOST_RE.fullmatch(name) or _IPV6_RE.fullmatch(name):
        return (False, name.encode("ascii"))
    raise ValueError(f"invalid host {host!r}: expected a name such as 'api.example.com' or "
                     f"'*.example.com', without port")


def _pattern_bytes(pattern: object, kind: str) -> bytes:
    if not isinstance(pattern, str):
        raise TypeError(f"{kind} must be a str, not {type(pattern).__name__}")
    if not pattern.startswith("/"):
        raise ValueError(f"{kind} {pattern!r} must start with '/'")
    if not pattern.isascii():
        raise ValueError(f"{kind} {pattern!r} must be ASCII: percent-encode other characters")
    raw = pattern.encode("ascii")
    try:
        normal = normalize_path(raw)
    except PathError as e:
        raise ValueError(f"{kind} {pattern!r} is not a valid path: {e}") from None
    if normal != raw:
        raise ValueError(f"{kind} {pattern!r} is not in normal form: requests for it arrive as "
                         f"{normal.decode('ascii')!r}")
    return raw


def _parse_path(path: str) -> tuple[bytes, tuple[Segment, ...]]:
    raw = _pattern_bytes(path, "path")
    parts = path[1:].split("/")
    if len(parts) > MAX_SEGMENTS:
        raise ValueError(f"path {path!r} has more than {MAX_SEGMENTS} segments")
    segments: list[Segment] = []
    names: set[str] = set()
    for i, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            segments.append((_LITERAL, part.encode("ascii")))
            continue
        m = _PARAM_RE.fullmatch(part)
        if m is None:
            raise ValueError(f"path {path!r}: segment {part!r} must be wholly literal or wholly "
                             f"a parameter such as {{name}} or {{name*}}")
        name, star = m.group(1), m.group(2)
        if name in names:
            raise ValueError(f"path {path!r}: parameter {name!r} appears twice")
        if star and i != len(parts) - 1:
            raise ValueError(f"path {path!r}: catch-all {{{name}*}} must be the last segment")
        names.add(name)
        segments.append((_CATCHALL if star else _PARAM, name))
    return raw, tuple(segments)


def _parse_prefix(prefix: str) -> tuple[bytes, tuple[Segment, ...]]:
    raw = _pattern_bytes(prefix, "prefix")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix {prefix!r} must be literal: use path with {{name*}} for params")
    if len(raw) > 1 and raw.endswith(b"/"):
        raw = raw[:-1]
    segments = () if raw == b"/" else tuple((_LITERAL, s) for s in raw[1:].split(b"/"))
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"prefix {prefix!r} has more than {MAX_SEGMENTS} segments")
    return raw, segments
