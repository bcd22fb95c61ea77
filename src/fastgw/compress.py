"""Response compression (`compress:` on a route): gzip, brotli and zstd, streamed.

The filter is a response filter of phase COMPRESS, compiled (`fastgw._proxy.CompressFilter`,
`_proxy_src/compress.pyx`), built from a route's `Policy` and the codecs here. For each upstream
response it decides, from the head alone, whether the body is compressed; if so it sets
`Content-Encoding` and asks for the body (`head.stream_through`), which then goes through one
compressor per response piece by piece: nothing is buffered beyond what the compressor itself
holds. The exchange sends the result
chunked (close-delimited to HTTP/1.0 clients), since its length is not known in advance.

A response is compressed only when all of these hold:
- it is an upstream response (the gateway's own replies are small; an aggregation compresses its
  merged body itself, with `compress_body`), with a body: not to HEAD, not 1xx, 204 or 304;
- it is not a range response (206, or any `Content-Range`), and not already encoded (any
  `Content-Encoding`), and its `Cache-Control` has no `no-transform`;
- its media type is one of the route's `types` (`text/*` and `application/*+json` patterns);
- its `Content-Length` is at least `min_size`; a response without one (chunked or close-delimited)
  is compressed whatever its size, since the decision is made before any of the body is seen and
  holding the body back to measure it would delay streaming responses;
- the client accepts one of the route's `encodings` (Accept-Encoding with q-values, RFC 9110
  §12.5.3; `*` stands for codings not listed; `x-gzip` is gzip; no header means no compression).
  Among the accepted ones with the highest q, the route's order decides.

`Vary: Accept-Encoding` is added to every response that passes the checks before the last one,
compressed or not, since what a cache may serve for that URL then depends on Accept-Encoding.
A compressed response's strong `ETag` becomes weak (the bytes differ from the identity
representation, as nginx does) and `Accept-Ranges` is removed.

Codecs: gzip is the standard library's zlib; brotli is Google's `brotli` binding; zstd is the
API of the standard library's `compression.zstd` (Python 3.14, PEP 784), from `backports.zstd`
before 3.14, so the dependency goes away with the Python upgrade. zstd levels are capped at 19,
whose window (8 MiB) is the most RFC 9659 allows for HTTP.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

import brotli

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[no-redef]

from fastgw._proxy import CompressFilter, Request
from fastgw.config.model import COMPRESS_ENCODINGS, Compress

__all__ = [
    "ENCODINGS", "CompressFilter", "Policy", "TypeMatcher", "compress_body", "negotiate", "route_compress_filter",
]

ENCODINGS = COMPRESS_ENCODINGS
"""Every coding fastgw can produce, in its default order of preference."""

_CACHE_SIZE = 256
"""Distinct Accept-Encoding and Content-Type values remembered per route (clients send few)."""

Stream = tuple[Callable[[bytes], bytes], Callable[[], bytes]]
"""A response's compressor: (compress a piece, finish and return the rest)."""


def _window_bits(length: int | None, top: int, low: int, lookahead: int) -> int:
    """The window for a body of `length` bytes (None: unknown): halved from `top` while half of
    it still holds the whole body, as nginx does for gzip and ngx_brotli for brotli. A compressor
    sets up (zlib: zeroes) tables in proportion to its window, which for a 4 KiB body was most
    of the work: 65,000 of 435,000 instructions per request in memset alone at zlib's 32 KiB."""
    bits = top
    if length:
        while bits > low and length < (1 << (bits - 1)) - lookahead:
            bits -= 1
    return bits


def _gzip(level: int, length: int | None) -> Any:
    bits = _window_bits(length, 15, 9, 262)  # 262: zlib's MIN_LOOKAHEAD
    # zlib's hash table shrinks with the window, as nginx's gzip filter does (memLevel 8 at 32 KiB).
    return zlib.compressobj(level, zlib.DEFLATED, 16 + bits, max(1, bits - 7))


def _gzip_stream(level: int, length: int | None) -> Stream:
    c = _gzip(level, length)
    return c.compress, c.flush


def _gzip_whole(data: bytes, level: int) -> bytes:
    c = _gzip(level, len(data))
    out: bytes = c.compress(data) + c.flush()
    return out


def _br_stream(level: int, length: int | None) -> Stream:
    c = brotli.Compressor(quality=level, lgwin=_window_bits(length, 22, 10, 16))
    return c.process, c.finish


ZSTD_IDLE = 4
"""zstd compressors kept per level for the next responses: a new one costs about 800,000
instructions to set up (callgrind), eight times what it then spends on a 4 KiB JSON body, and
one ends each response with its frame closed, ready for the next. Each holds about 1 MiB (2.4
after a large body), so a worker keeps a few."""
_zstd_idle: dict[int, list[Any]] = {}


def _zstd_take(level: int) -> Any:
    idle = _zstd_idle.get(level)
    return idle.pop() if idle else zstd.ZstdCompressor(level=level)


def _zstd_give(level: int, compressor: Any) -> None:
    idle = _zstd_idle.setdefault(level, [])
    if len(idle) < ZSTD_IDLE:
        idle.append(compressor)


def _zstd_stream(level: int, length: int | None) -> Stream:
    c = _zstd_take(level)

    def finish() -> bytes:
        tail: bytes = c.flush()  # ends the frame: the compressor can start the next one
        _zstd_give(level, c)
        return tail

    return c.compress, finish


def _zstd_whole(data: bytes, level: int) -> bytes:
    c = _zstd_take(level)
    out: bytes = c.compress(data) + c.flush()
    _zstd_give(level, c)
    return out


_STREAMS: dict[str, Callable[[int, int | None], Stream]] = {
    "gzip": _gzip_stream, "br": _br_stream, "zstd": _zstd_stream,
}
"""A compressor for a body of the given length (None: unknown)."""
_WHOLE: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip_whole,
    "br": lambda data, level: brotli.compress(data, quality=level, lgwin=_window_bits(len(data), 22, 10, 16)),
    "zstd": _zstd_whole,
}


def negotiate(accept: bytes | None, offered: tuple[str, ...]) -> str | None:
    """The coding of `offered` the client prefers by `accept` (an Accept-Encoding value), or
    None: highest q first, then the order of `offered`; q=0 refuses a coding; `*` gives its q to
    every coding not named. A malformed element is ignored."""
    if not accept:
        return None
    named: dict[str, float] = {}
    star: float | None = None
    for element in accept.decode("latin-1").split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        if params:
            name, _, value = params.strip().partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                q = float(value.strip())
            except ValueError:
                continue
            if not 0.0 <= q <= 1.0:
                continue
        if coding == "x-gzip":
            coding = "gzip"
        if coding == "*":
            star = q
        else:
            named[coding] = max(q, named.get(coding, 0.0))
    best, best_q = None, 0.0
    for coding in offered:
        q = named.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    return best


class TypeMatcher:
    """Media types as `type/subtype`, `type/*` or `type/*+suffix` patterns (lower case);
    parameters of the response's type (`; charset=...`) are ignored."""

    __slots__ = ("exact", "any_subtype", "suffixes", "cache")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: set[bytes] = set()
        self.any_subtype: set[bytes] = set()
        self.suffixes: list[tuple[bytes, bytes]] = []
        for pattern in patterns:
            kind, _, subtype = pattern.lower().encode().partition(b"/")
            if subtype == b"*":
                self.any_subtype.add(kind)
            elif subtype.startswith(b"*+"):
                self.suffixes.append((kind, subtype[1:]))
            else:
                self.exact.add(kind + b"/" + subtype)
        self.cache: dict[bytes, bool] = {}
        """Content-Type -> whether it matches (the compiled filter reads it first)."""

    def match(self, content_type: bytes) -> bool:
        known = self.cache.get(content_type)
        if known is not None:
            return known
        media = content_type.split(b";", 1)[0].strip().lower()
        kind, _, subtype = media.partition(b"/")
        result = bool(subtype) and (
            media in self.exact
            or kind in self.any_subtype
            or any(kind == k and subtype.endswith(suffix) for k, suffix in self.suffixes)
        )
        if len(self.cache) >= _CACHE_SIZE:
            self.cache.clear()
        self.cache[content_type] = result
        return result


class Policy:
    """What one route's `compress` decides, shared by its filter and its aggregation."""

    __slots__ = ("encodings", "levels", "min_size", "types", "choices")

    def __init__(self, config: Compress) -> None:
        self.encodings = config.encodings
        self.levels = {"gzip": config.gzip_level, "br": config.br_level, "zstd": config.zstd_level}
        self.min_size = config.min_size
        self.types = TypeMatcher(config.types)
        self.choices: dict[bytes | None, str | None] = {}
        """Accept-Encoding -> the coding chosen (the compiled filter reads it first)."""

    def choose(self, accept: bytes | None) -> str | None:
        choices = self.choices
        try:
            return choices[accept]
        except KeyError:
            pass
        coding = negotiate(accept, self.encodings)
        if len(choices) >= _CACHE_SIZE:
            choices.clear()
        choices[accept] = coding
        return coding


def compress_body(
    policy: Policy | None, req: Request, body: bytes, content_type: bytes
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A whole body the gateway made itself (an aggregation's), compressed by the route's policy:
    the body to send and the headers to add (Content-Encoding, Vary). The same checks as the
    filter, on what is known of a local reply."""
    if policy is None or req.method == b"HEAD" or len(body) < policy.min_size or not policy.types.match(content_type):
        return body, []
    coding = policy.choose(req.header(b"accept-encoding"))
    if coding is None:
        return body, [(b"vary", b"Accept-Encoding")]
    compressed = _WHOLE[coding](body, policy.levels[coding])
    return compressed, [(b"content-encoding", coding.encode()), (b"vary", b"Accept-Encoding")]


def route_compress_filter(route: Any) -> CompressFilter | None:
    """The route's filter, or None without `compress`."""
    return CompressFilter(Policy(route.compress), _STREAMS) if route.compress is not None else None
