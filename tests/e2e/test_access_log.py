"""The access log (DESIGN §3 step 6): one record per request, gateway-made answers included, valid
JSON whatever bytes the client sent, the combined format, and reopening on USR1 (logrotate)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
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
