"""The access log (DESIGN §3 step 6): one record per request, gateway-made answers included, valid
JSON whatever bytes the client sent, the combined format, and reopening on USR1 (logrotate)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Conn, build_request, http_get, raw_request
from tests.support.procs import Backend, Gateway, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("logs") as b:
        yield b


def config_for(backend: Backend, log: Path, fmt: str = "json") -> dict[str, Any]:
    return {
        "workers": 1,
        "grace_period": "5s",
        "upstreams": {"backend": {"targets": [f"127.0.0.1:{backend.port}"]}},
        "routes": [{"match": {"prefix": "/echo"}, "upstream": "backend"}],
        "access_log": {"path": str(log), "format": fmt},
    }


def read_lines(log: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The log is flushed every 100 ms by the worker; wait for `count` complete lines."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        lines = [line for line in text.split("\n") if line]
        if len(lines) >= count and text.endswith("\n"):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} log lines, got {lines!r}")
        time.sleep(0.05)


def test_json_records_for_proxied_and_local_answers(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Gateway(config_for(backend, log), tmp_path) as g:
        ok = http_get(g.port, "/echo/a?x=1")
        missing = http_get(g.port, "/nowhere")
        weird = raw_request(g.port, build_request("GET", '/echo/q?a="quote"&b=\\back', host="x"), responses=1)
        assert weird.status == 200
        records = [json.loads(line) for line in read_lines(log, 3)]
    by_uri = {r["uri"]: r for r in records}
    first = by_uri["/echo/a?x=1"]
    assert first["status"] == 200 and first["method"] == "GET" and first["remote"] == "127.0.0.1"
    assert first["request_id"] == ok.header("x-request-id")
    assert first["bytes"] == len(ok.body)
    assert first["upstream"] == f"127.0.0.1:{backend.port}"
    assert isinstance(first["duration_ms"], float) and 0 <= first["duration_ms"] < 5000
    assert by_uri["/nowhere"]["status"] == 404 and by_uri["/nowhere"]["upstream"] == ""
    assert by_uri["/nowhere"]["request_id"] == missing.header("x-request-id")
    assert '/echo/q?a="quote"&b=\\back' in by_uri  # escaped in the file, exact once parsed


def test_refused_request_is_logged_once(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Gateway(config_for(backend, log), tmp_path) as g:
        bad = raw_request(g.port, b"GET /echo HTTP/1.1\r\n\r\n")  # no Host
        assert bad.status == 400
        with Conn(g.port) as conn:
            assert conn.request("GET", "/echo").status == 200
        records = [json.loads(line) for line in read_lines(log, 2)]
    assert sorted(r["status"] for r in records) == [200, 400]


def test_combined_format(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Gateway(config_for(backend, log, "combined"), tmp_path) as g:
        http_get(g.port, "/echo/c", headers=[("User-Agent", 'agent "x"'), ("Referer", "http://r/")])
        (line,) = read_lines(log, 1)
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /echo/c HTTP/1.1" 200 ' in line
    assert line.endswith('"http://r/" "agent \\x22x\\x22"')


def test_usr1_reopens_the_log_file(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    with Gateway(config_for(backend, log), tmp_path) as g:
        http_get(g.port, "/echo/before")
        read_lines(log, 1)
        os.rename(log, rotated)
        os.kill(g.master_pid, signal.SIGUSR1)
        # Requests go on while the signal travels master -> worker; every record lands in
        # exactly one of the two files, and once the worker reopened, in the new one.
        deadline = time.monotonic() + 5
        while not log.exists():
            http_get(g.port, "/echo/during")
            assert time.monotonic() < deadline, "the worker never reopened the log"
            time.sleep(0.05)
        http_get(g.port, "/echo/after")
        new = [json.loads(line) for line in read_lines(log, 1)]
        assert "/echo/after" in {r["uri"] for r in new}
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    assert old[0]["uri"] == "/echo/before"


TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
COMBINED = re.compile(
    r'(?P<remote>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<uri>\S+) (?P<version>HTTP/1\.[01])" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"'
)


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_each_record_carries_its_own_time(backend: Backend, tmp_path: Path) -> None:
    """Defect: `ts` was the sweeper's cached tick, so sequential requests shared one millisecond."""
    log = tmp_path / "access.log"
    windows = []
    with Gateway(config_for(backend, log), tmp_path) as g, Conn(g.port) as conn:
        for i in range(5):
            before = time.time()
            assert conn.request("GET", f"/echo/{i}").status == 200
            windows.append((before, time.time()))
            time.sleep(0.003)  # time itself must pass between the records
        records = [json.loads(line) for line in read_lines(log, 5)]
    stamps = [r["ts"] for r in records]
    assert all(TS.fullmatch(s) for s in stamps), stamps
    assert len(set(stamps)) == 5 and stamps == sorted(stamps)
    for record, (before, after) in zip(records, windows, strict=True):
        # Stamped when the request ended, to the millisecond (truncated): within what the client saw.
        assert before - 0.002 <= _ts(record["ts"]) <= after + 0.002, (record, before, after)


def test_gateway_made_replies_are_logged_field_by_field(backend: Backend, tmp_path: Path) -> None:
    """Defect: 404, 405 and 429 logged `bytes: 0` although their bodies were sent."""
    log = tmp_path / "access.log"
    doc = config_for(backend, log)
    doc["rate_limits"] = {"one": {"rate": "1/m", "burst": 1, "key": "ip"}}
    doc["routes"] += [
        {"match": {"prefix": "/limited"}, "upstream": "backend", "rate_limit": "one", "strip_prefix": True},
        {"match": {"path": "/only-get", "methods": ["GET"]}, "upstream": "backend"},
    ]
    sent = []
    with Gateway(doc, tmp_path) as g:
        before = time.time()
        sent.append(("GET", "/nowhere", http_get(g.port, "/nowhere")))
        with Conn(g.port) as conn:
            sent.append(("POST", "/only-get", conn.request("POST", "/only-get", body=b"x")))
            sent.append(("GET", "/limited/echo/a", conn.request("GET", "/limited/echo/a")))
            sent.append(("GET", "/limited/echo/b", conn.request("GET", "/limited/echo/b")))
            sent.append(("HEAD", "/nowhere", conn.request("HEAD", "/nowhere")))
        bad = raw_request(g.port, build_request("GET", "/a/%2F/b", host="x"), responses=1)
        after = time.time()
        records = [json.loads(line) for line in read_lines(log, 6)]
    assert [resp.status for _, _, resp in sent] == [404, 405, 200, 429, 404]
    assert bad.status == 400
    by_rid = {r["request_id"]: r for r in records}
    assert len(by_rid) == 6
    for method, uri, resp in sent:
        record = by_rid[resp.header("x-request-id")]
        assert set(record) == {"ts", "remote", "method", "uri", "status", "bytes", "duration_ms", "upstream",
                               "request_id", "trace_id"}
        assert record["method"] == method and record["uri"] == uri and record["status"] == resp.status
        assert record["remote"] == "127.0.0.1" and record["trace_id"] is None
        assert before - 0.002 <= _ts(record["ts"]) <= after + 0.002
        assert isinstance(record["duration_ms"], float) and 0 <= record["duration_ms"] < 5000
        # the body bytes the client received: the JSON error, the proxied answer, none for HEAD
        assert record["bytes"] == len(resp.body), (record, resp.body)
        if resp.status == 200:
            assert record["upstream"] == f"127.0.0.1:{backend.port}" and record["bytes"] > 0
        else:
            assert record["upstream"] == ""
            assert method == "HEAD" or record["bytes"] == int(resp.header("content-length") or -1) > 100
    (refused,) = [r for r in records if r["status"] == 400]
    assert refused["bytes"] == len(bad.responses[0].body) > 0 and refused["uri"] == "/a/%2F/b"


def test_combined_format_is_clf(backend: Backend, tmp_path: Path) -> None:
    """Defect: `combined` wrote ISO time; goaccess and fail2ban read `[05/Dec/2026:01:02:03 +0000]`."""
    log = tmp_path / "access.log"
    with Gateway(config_for(backend, log, "combined"), tmp_path) as g:
        before = time.time()
        ok = http_get(g.port, "/echo/c?q=1", headers=[("User-Agent", "curl/8.0"), ("Referer", "http://r/")])
        missing = http_get(g.port, "/nowhere")
        after = time.time()
        lines = read_lines(log, 2)
    parsed = [COMBINED.fullmatch(line) for line in lines]
    assert all(parsed), lines
    first, second = (m.groupdict() for m in parsed if m is not None)
    for m in (first, second):
        when = datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        assert int(before) <= when <= after
    assert (first["remote"], first["method"], first["uri"], first["version"], first["status"]) == (
        "127.0.0.1", "GET", "/echo/c?q=1", "HTTP/1.1", "200")
    assert int(first["bytes"]) == len(ok.body) and first["referer"] == "http://r/" and first["agent"] == "curl/8.0"
    assert second["status"] == "404" and int(second["bytes"]) == len(missing.body) > 0
    assert second["referer"] == "-" and second["agent"] == "-"
