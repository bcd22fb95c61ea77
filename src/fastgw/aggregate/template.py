"""Templates of aggregation calls: the path (with its query) and header values, with `{...}`
references filled per request.

A reference names where its value comes from:
- `{id}`: the route's path parameter `id` (as matched, still percent-encoded);
- `{claim.sub}`, `{claim.org.id}`: a claim of the verified token (`req.claims`, set by an auth
  filter), nested claims by dots;
- `{query.page}`: a query parameter of the client's request (its first value, decoded);
- `{header.x-user}`: a header of the client's request;
- `{profile.team_id}`, `{profile.teams.0.id}`: a value in the JSON answer of the earlier call
  `profile` (object keys and list indexes, separated by dots).

How values are written: in a path, a path parameter goes in as matched (it is one segment of an
already normalized path, or several for a catch-all) and any other value is percent-encoded
whole, `/` included, so it stays one segment; in a query, every value is percent-encoded whole,
so it cannot add parameters (`&`, `=`) or end the query (`#`); in a header, a value goes in as it
is, and the client refuses CR, LF and NUL. Only scalars (strings, numbers, booleans) fill a
reference; null, objects, lists and absent values make the call fail (`Missing`).

`parse` is pure and shared by config validation (which reports bad templates with their key path)
and the runtime (which compiles each template once per worker).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

__all__ = ["NAMESPACES", "Missing", "Ref", "Template", "parse", "scalar_text"]

NAMESPACES = ("claim", "query", "header")
"""Sources of the request; any other dotted name is an earlier call."""

_REF = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_KEY = re.compile(r"[^.{}\s]+")
_QUERY_NAME = re.compile(r"[^{}\s&=#]+")
# What a path or query may contain as literal text: visible ASCII but '#' and the braces.
_LITERAL = re.compile(r"[\x21-\x7e]*")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class Missing(Exception):
    """A reference has no usable value for this request; the message says which."""


class Ref:
    """One `{...}`: `kind` is `param`, `claim`, `query`, `header` or `call`; `name` the parameter,
    claim, query parameter, lower-case header or call name; `keys` the path into a call's JSON;
    `in_query` where it stands in a path template."""

    __slots__ = ("kind", "name", "keys", "in_query", "text")

    def __init__(self, kind: str, name: str, keys: tuple[str, ...], in_query: bool, text: str) -> None:
        self.kind = kind
        self.name = name
        self.keys = keys
        self.in_query = in_query
        self.text = text

    def describe(self) -> str:
        if self.kind == "param":
            return f"path parameter {self.name!r}"
        if self.kind == "call":
            return f"{'.'.join((self.name, *self.keys))!r} in the answer of call {self.name!r}"
        if self.kind == "claim":
            return f"claim {'.'.join((self.name, *self.keys))!r}"
        return f"{'query parameter' if self.kind == 'query' else self.kind} {self.name!r}"


class Template:
    """Literal text and references, in order. `calls`: names of the earlier calls it reads."""

    __slots__ = ("parts", "refs", "calls", "text", "is_path")

    def __init__(self, parts: tuple[str | Ref, ...], text: str, is_path: bool) -> None:
        self.parts = parts
        self.refs = tuple(p for p in parts if isinstance(p, Ref))
        self.calls = frozenset(r.name for r in self.refs if r.kind == "call")
        self.text = text
        self.is_path = is_path

    def render(self, value: Callable[[Ref], str]) -> str:
        """The filled template; `value(ref)` gives a reference's text (raising Missing)."""
        if not self.refs:
            return self.text
        out = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
                continue
            ref: Ref = part  # type: ignore[assignment]
            text = value(ref)
            if not self.is_path:
                out.append(text)
            elif ref.kind == "param":
                out.append(quote(unquote(text), safe="") if ref.in_query else text)
            else:
                out.append(quote(text, safe=""))
        return "".join(out)


def parse(text: str, calls: frozenset[str] | set[str], *, is_path: bool) -> Template:
    """The template in `text`; `calls` are the names a dotted reference may use as a call.
    Raises ValueError naming the first problem."""
    if not isinstance(text, str) or not text:
        raise ValueError("expected a non-empty template string")
    if is_path:
        if not text.startswith("/"):
            raise ValueError(f"must start with '/', got {text!r}")
        if "#" in text:
            raise ValueError("a call's path cannot have a fragment ('#')")
    parts: list[str | Ref] = []
    pos = 0
    in_query = False
    for m in _REF.finditer(text):
        literal = text[pos:m.start()]
        _check_literal(literal, is_path)
        if literal:
            parts.append(literal)
        in_query = in_query or (is_path and "?" in literal)
        parts.append(_ref(m.group(1), calls, in_query, m.group(0)))
        pos = m.end()
    rest = text[pos:]
    _check_literal(rest, is_path)
    if rest:
        parts.append(rest)
    return Template(tuple(parts), text, is_path)


def _check_literal(literal: str, is_path: bool) -> None:
    if "{" in literal or "}" in literal:
        raise ValueError("unbalanced '{' or '}': a reference is written {name}")
    if is_path:
        if not _LITERAL.fullmatch(literal):
            raise ValueError(f"{literal!r}: a path may hold visible ASCII only (percent-encode the rest)")
        if _ESCAPE.search(literal):
            raise ValueError(f"{literal!r}: '%' must start a %XX escape")


def _ref(inner: str, calls: frozenset[str] | set[str], in_query: bool, text: str) -> Ref:
    head, dot, rest = inner.partition(".")
    if not dot:
        if not _NAME.fullmatch(inner):
            raise ValueError(f"{text}: a reference is a path parameter name or source.name (claim., query., header., "
                             "or an earlier call)")
        return Ref("param", inner, (), in_query, text)
    if head in NAMESPACES:
        if not rest:
            raise ValueError(f"{text}: {head}. needs a name")
        if head == "header":
            if not _HEADER_NAME.fullmatch(rest):
                raise ValueError(f"{text}: {rest!r} is not a header name")
            return Ref("header", rest.lower(), (), in_query, text)
        if head == "query":
            if not _QUERY_NAME.fullmatch(rest):
                raise ValueError(f"{text}: {rest!r} is not a query parameter name")
            return Ref("query", rest, (), in_query, text)
        keys = tuple(rest.split("."))
        if not all(_KEY.fullmatch(k) for k in keys):
            raise ValueError(f"{text}: empty or invalid claim name in {rest!r}")
        return Ref("claim", keys[0], keys[1:], in_query, text)
    if not _NAME.fullmatch(head):
        raise ValueError(f"{text}: {head!r} is not a call name")
    keys = tuple(rest.split("."))
    if not all(_KEY.fullmatch(k) for k in keys):
        raise ValueError(f"{text}: empty or invalid key in {rest!r}")
    if head not in calls:
        known = ", ".join(sorted(calls)) or "none"
        raise ValueError(f"{text}: {head!r} is not a source (claim, query, header) nor a call of this aggregate "
                         f"(calls: {known})")
    return Ref("call", head, keys, in_query, text)


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as template text: strings as they are, booleans as true/false, numbers as
    JSON writes them; None for anything else (null, objects, lists)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else None
    return None


def lookup(value: Any, keys: tuple[str, ...]) -> Any:
    """The value at `keys` in parsed JSON (object keys, list indexes), or None."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value
