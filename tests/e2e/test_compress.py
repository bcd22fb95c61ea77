"""Response compression end to end: a real gateway in front of the real test backend, whose
`/text/{n}` answers `body_bytes(n)` with the content type, framing, status and headers a test
asks for. What a client relies on: the body decompresses to exactly what the backend sent (gzip,
brotli and zstd, from Content-Length and chunked upstream responses, to HTTP/1.1 and 1.0
clients), only codings it accepts (q-values), `Vary: Accept-Encoding`, and none of it where
compression would be wrong: no-transform, ranges, already-encoded bodies, HEAD, 204/304, types not
listed, bodies known to be smaller than `min_size`."""
from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest

from fastgw.compress import zstd
from tests.support.backend import body_bytes
from tests.support.client import Response, build_request, http_get, raw_request
from tests.support.procs import Backend, Gateway, gateway_config

pytestmark = pytest.mark.e2e

DECODE = {"gzip": gzip.decompress, "br": brotli.decompress, "zstd": zstd.decompress}


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = gateway_config(
        backend.port,
        routes=[
            {"match": {"prefix": "/c"}, "upstream": "backend", "strip_prefix": True,
             "compress": {"types": ["text/*", "application/json"], "min_size": "1KiB"}},
            {"match": {"prefix": "/gz"}, "upstream": "backend", "strip_prefix": True,
             "compress": {"encodings": ["gzip"], "level": {"gzip": 1}}},
            {"match": {"prefix": "/"}, "upstream": "backend"},
        ],
    )
    with Gateway(config, tmp_path_factory.mktemp("compress")) as g:  # __enter__ starts it
        yield g


def get(gw: Gateway, path: str, accept: str | None) -> Response:
    return http_get(gw.port, path, {"Accept-Encoding": accept} if accept is not None else {}, timeout=10)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("chunks", [0, 7])
def test_body_decompresses_byte_exact(gw: Gateway, coding: str, chunks: int) -> None:
    n = 300_000
    r = get(gw, f"/c/text/{n}?chunks={chunks}", coding)
    assert r.status == 200, r.summary()
    assert r.header("content-encoding") == coding
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("content-length") is None and r.chunked
    assert DECODE[coding](r.body) == body_bytes(n)
    assert len(r.body) < n // 10


def test_json_and_charset_parameters_match(gw: Gateway) -> None:
    r = get(gw, "/c/text/5000?type=application/json;%20charset=utf-8", "gzip")
    assert r.header("content-encoding") == "gzip" and gzip.decompress(r.body) == body_bytes(5000)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),  # equal q: the route's order (zstd, br, gzip)
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("br;q=0.2, gzip;q=0.3, zstd;q=0.1", "gzip"),
        ("x-gzip", "gzip"),
        ("*", "zstd"),
        ("*;q=0.5, zstd;q=0", "br"),
        ("GZIP;Q=0.5", "gzip"),
        ("gzip;q=0", None),
        ("identity", None),
        ("deflate, compress", None),
        ("", None),
        (None, None),
        ("gzip;q=abc, br;q=2", None),  # malformed q-values are ignored
    ],
)
def test_only_an_accepted_coding_by_q_value(gw: Gateway, accept: str | None, chosen: str | None) -> None:
    r = get(gw, "/c/text/20000", accept)
    assert r.status == 200, r.summary()
    assert r.header("content-encoding") == chosen
    assert r.header("vary") == "Accept-Encoding"  # the answer varies whatever this client took
    if chosen is None:
        assert r.body == body_bytes(20000) and r.header("content-length") == "20000"
    else:
        assert DECODE[chosen](r.body) == body_bytes(20000)


@pytest.mark.parametrize(
    "query",
    [
        "set=Cache-Control:public,%20no-transform",
        "status=206&set=Content-Range:bytes%200-19999/40000",
        "set=Content-Range:bytes%200-19999/40000",
        "type=image/png",
        "type=application/octet-stream",
    ],
)
def test_no_compression_where_it_would_be_wrong(gw: Gateway, query: str) -> None:
    r = get(gw, f"/c/text/20000?{query}", "gzip, br, zstd")
    assert r.header("content-encoding") is None, r.summary()
    assert r.body == body_bytes(20000) and r.header("content-length") == "20000"


def test_an_encoded_body_passes_untouched(gw: Gateway) -> None:
    r = get(gw, "/c/text/20000?set=Content-Encoding:br", "gzip")
    assert r.header("content-encoding") == "br" and r.body == body_bytes(20000)
    assert r.header("vary") is None


def test_min_size_by_content_length_and_chunked_bodies_compressed_whatever_their_size(gw: Gateway) -> None:
    small = get(gw, "/c/text/1000", "gzip")
    assert small.header("content-encoding") is None and small.body == body_bytes(1000)
    at_min = get(gw, "/c/text/1024", "gzip")
    assert at_min.header("content-encoding") == "gzip" and gzip.decompress(at_min.body) == body_bytes(1024)
    chunked = get(gw, "/c/text/1000?chunks=2", "gzip")
    assert chunked.header("content-encoding") == "gzip" and gzip.decompress(chunked.body) == body_bytes(1000)


def test_head_204_and_304_are_never_encoded(gw: Gateway) -> None:
    raw = raw_request(
        gw.port, build_request("HEAD", "/c/text/5000", {"Accept-Encoding": "gzip"}, host="x"), responses=1,
        head_request=True,
    )
    head = raw.responses[0]
    assert head.status == 200 and head.header("content-encoding") is None and head.header("content-length") == "5000"
    for path in ("/c/204", "/c/304"):
        r = get(gw, path, "gzip")
        assert r.status in (204, 304) and r.header("content-encoding") is None and r.body == b""


def test_etag_turns_weak_and_accept_ranges_goes(gw: Gateway) -> None:
    query = "set=ETag:%22v1%22&set=Accept-Ranges:bytes&set=Vary:Origin"
    r = get(gw, f"/c/text/5000?{query}", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header("etag") == 'W/"v1"' and r.header("accept-ranges") is None
    assert r.header("vary") == "Origin, Accept-Encoding"
    plain = get(gw, f"/c/text/5000?{query}", None)
    assert plain.header("etag") == '"v1"' and plain.header("accept-ranges") == "bytes"


def test_http10_client_gets_a_close_delimited_compressed_body(gw: Gateway) -> None:
    raw = raw_request(
        gw.port, build_request("GET", "/c/text/50000", {"Accept-Encoding": "br"}, host="x", version="HTTP/1.0"),
    )
    r = raw.responses[0]
    assert raw.closed and r.status == 200 and r.header("content-encoding") == "br"
    assert brotli.decompress(r.body) == body_bytes(50000)


def test_route_list_of_encodings_and_default_types(gw: Gateway) -> None:
    r = get(gw, "/gz/text/5000?type=application/problem%2Bjson", "br, gzip;q=0.1")
    assert r.header("content-encoding") == "gzip" and gzip.decompress(r.body) == body_bytes(5000)
    r = get(gw, "/gz/text/5000", "br")
    assert r.header("content-encoding") is None
    r = get(gw, "/text/5000", "gzip")  # a route without compress
    assert r.header("content-encoding") is None and r.header("vary") is None


def test_a_large_body_is_streamed(gw: Gateway, tmp_path: Path) -> None:
    n = 40 * 1024 * 1024
    r = get(gw, f"/c/text/{n}?chunks=64", "zstd")
    assert r.header("content-encoding") == "zstd" and r.chunks > 1
    assert zstd.decompress(r.body) == body_bytes(n)
