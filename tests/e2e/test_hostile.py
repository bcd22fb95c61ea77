"""The hostile-request corpus (tests/data/requests) through a real gateway with 2 workers.

Each case goes on a fresh connection. Invalid requests must get the gateway's JSON error with the
expected status, close the connection where DESIGN says so, and never reach the backend (counted
by the backend itself). Valid requests must reach the backend exactly once, in the form the case
describes (as the backend's `/echo` reports it). Every problem of a case is reported at once, so
that a failure reads as a bug report for the gateway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cases import Case, load_cases
from tests.support.client import (
    Conn,
    ConnectionClosed,
    ProtocolError,
    Response,
    raw_request,
)
from tests.support.procs import Backend, Gateway, ProcessError, start_gateway

pytestmark = pytest.mark.e2e

INVALID = load_cases("invalid")
VALID = load_cases("valid")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Longer than the reference config's upstream read timeout (5 s): a gateway that waits on the
# upstream when it should have answered shows as its own 504, not as a client-side timeout.
_EXCHANGE_TIMEOUT = 8.0


class _SharedGateway:
    """One gateway for the whole module, restarted if a case killed it (that case fails on its
    own); after a failed start every later case fails at once instead of waiting again."""

    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.starts = 0
        self.gw: Gateway | None = None
        self.start_error: str | None = None

    def get(self) -> Gateway:
        if self.start_error is not None:
            pytest.fail(f"the gateway did not start: {self.start_error}", pytrace=False)
        if self.gw is None or not self.gw.alive():
            if self.gw is not None:
                self.gw.close()
            self.starts += 1
            try:
                self.gw = start_gateway(self.backend, self.workdir / f"start{self.starts}")
            except ProcessError as exc:
                self.start_error = str(exc)
                raise
        return self.gw


@pytest.fixture(scope="module")
def shared_gateway(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_SharedGateway]:
    shared = _SharedGateway(backend, tmp_path_factory.mktemp("hostile"))
    yield shared
    if shared.gw is not None:
        shared.gw.close()


@pytest.fixture
def gw(shared_gateway: _SharedGateway) -> Gateway:
    return shared_gateway.get()


def _received(stats: dict[str, int]) -> int:
    """What reached the backend: request heads it parsed plus requests it could not parse."""
    return stats["requests"] + stats["parse_errors"]


def _received_in_full(stats: dict[str, int]) -> int:
    """Requests the backend received in full, plus requests it could not parse."""
    return stats["completed"] + stats["parse_errors"]


def _gateway_problems(gw: Gateway, first_line: int) -> list[str]:
    problems = []
    if not gw.alive():
        problems.append(f"the gateway master died (rc={gw.proc.poll() if gw.proc else None})")
    if any("Traceback" in line for line in gw.lines[first_line:]):
        problems.append("a Python traceback on the gateway's stderr:\n" + "\n".join(gw.lines[first_line:][-30:]))
    return problems


def _error_body_problems(resp: Response) -> list[str]:
    """The gateway-made error contract of DESIGN §5."""
    request_id = resp.header_values("X-Request-ID")
    problems = []
    if len(request_id) != 1 or not REQUEST_ID.fullmatch(request_id[0]):
        problems.append(f"X-Request-ID on the error response should be one well-formed id, got {request_id}")
    try:
        error = resp.json()["error"]
        if error["status"] != resp.status:
            problems.append(f"error.status {error['status']} differs from the response status {resp.status}")
        if not (isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)):
            problems.append(f"error.code / error.message missing or not strings: {error}")
        if request_id and error["request_id"] != request_id[0]:
            problems.append(f"error.request_id {error['request_id']!r} differs from X-Request-ID {request_id}")
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"error body is not the JSON error contract ({exc!r}): {resp.body[:300]!r}")
    return problems


def _report(case: Case, problems: list[str], detail: str) -> str:
    return f"{case.id}: {case.description}\n- " + "\n- ".join(problems) + f"\n--- what came back:\n{detail}"


def test_plain_request_is_proxied(gw: Gateway, backend: Backend) -> None:
    """The baseline every case relies on: a plain GET goes through and comes back."""
    before = _received(backend.stats())
    with Conn(gw.port) as conn:
        resp = conn.request("GET", "/echo/baseline")
    assert resp.status == 200, resp.summary()
    assert resp.json()["target"] == "/echo/baseline"
    assert _received(backend.stats()) - before == 1


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_request_is_refused(case: Case, gw: Gateway, backend: Backend) -> None:
    first_line = len(gw.lines)
    before = backend.stats()
    must_close = case.expect.get("closed") is True
    result = raw_request(gw.port, case.data, _EXCHANGE_TIMEOUT, responses=None if must_close else 1)
    after = backend.stats()

    problems = []
    if result.error is not None:
        problems.append(f"not a valid HTTP response: {result.error}")
    statuses = [r.status for r in result.responses]
    if len(statuses) != 1 or statuses[0] not in case.statuses():
        problems.append(f"expected one response with status {case.statuses()}, got {statuses or 'none'}")
    if must_close and not result.closed:
        problems.append(f"connection still open {_EXCHANGE_TIMEOUT}s after the response (expected close)")
    if must_close and result.reset:
        problems.append("connection reset instead of closed (a reset can destroy the answer before it is read)")
    for key, count, what in [
        ("upstream_requests", _received, "request head(s)"),
        ("upstream_completed", _received_in_full, "complete request(s)"),
    ]:
        expected, got = case.expect.get(key), count(after) - count(before)
        if expected is not None and got != expected:
            problems.append(f"the backend received {got} {what}, expected {expected}")
    if result.responses:
        problems += _error_body_problems(result.responses[0])
    problems += _gateway_problems(gw, first_line)
    assert not problems, _report(case, problems, result.summary())


def _expand(value: Any, gw: Gateway) -> Any:
    return value.replace("{port}", str(gw.port)) if isinstance(value, str) else value


def _upstream_problems(case: Case, echo: dict[str, Any], gw: Gateway) -> list[str]:
    """Compare what the backend's /echo saw with the case's `upstream_*` expectations."""
    expect = case.expect
    problems = []

    def values(name: str) -> list[str]:
        return [v for n, v in echo["headers"] if n.lower() == name.lower()]

    for key, field in [
        ("upstream_method", "method"),
        ("upstream_target", "target"),
        ("upstream_body_length", "body_length"),
        ("upstream_body_sha256", "body_sha256"),
    ]:
        if key in expect and echo[field] != _expand(expect[key], gw):
            problems.append(f"upstream {field} is {echo[field]!r}, expected {_expand(expect[key], gw)!r}")
    for name, want in expect.get("upstream_headers", {}).items():
        wanted = [_expand(v, gw) for v in want] if isinstance(want, list) else [_expand(want, gw)]
        if values(name) != wanted:
            problems.append(f"upstream {name} is {values(name)}, expected {wanted}")
    for name in expect.get("upstream_headers_absent", []):
        if values(name):
            problems.append(f"upstream received {name}: {values(name)} (must be removed)")
    for name, want in expect.get("upstream_headers_if_present", {}).items():
        if values(name) not in ([], [_expand(want, gw)]):
            problems.append(f"upstream {name} is {values(name)}, expected absent or [{_expand(want, gw)!r}]")
    for name, pattern in expect.get("upstream_header_matches", {}).items():
        got = values(name)
        if len(got) != 1 or not re.fullmatch(pattern, got[0]):
            problems.append(f"upstream {name} is {got}, expected one value matching {pattern!r}")
    return problems


def _response_problems(case: Case, resp: Response, echo: dict[str, Any], gw: Gateway) -> list[str]:
    problems = []
    for name, want in case.expect.get("response_headers", {}).items():
        if resp.header_values(name) != [_expand(want, gw)]:
            problems.append(f"response {name} is {resp.header_values(name)}, expected [{_expand(want, gw)!r}]")
    upstream_ids = [v for n, v in echo["headers"] if n.lower() == "x-request-id"]
    returned = resp.header_values("X-Request-ID")
    if len(upstream_ids) != 1 or returned != upstream_ids:
        problems.append(
            f"X-Request-ID sent upstream {upstream_ids} and returned {returned} should be the same single id"
        )
    return problems


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
def test_valid_request_is_forwarded(case: Case, gw: Gateway, backend: Backend) -> None:
    first_line = len(gw.lines)
    before = _received(backend.stats())
    problems: list[str] = []
    detail = ""
    with Conn(gw.port, timeout=_EXCHANGE_TIMEOUT) as conn:
        conn.send(case.data)
        try:
            resp = conn.read_response()
        except (ProtocolError, ConnectionClosed, ConnectionError, TimeoutError) as exc:
            problems.append(f"no valid response: {type(exc).__name__}: {exc}")
        else:
            detail = resp.summary()
            forwarded = _received(backend.stats()) - before
            if resp.status not in case.statuses():
                problems.append(f"status {resp.status}, expected {case.statuses()}")
            if forwarded != case.expect["upstream_requests"]:
                problems.append(
                    f"the backend received {forwarded} request(s), expected {case.expect['upstream_requests']}"
                )
            if resp.status == 200:
                echo = resp.json()
                problems += _upstream_problems(case, echo, gw)
                problems += _response_problems(case, resp, echo, gw)
            if case.expect.get("closed") is True:
                try:
                    if not conn.wait_closed(_EXCHANGE_TIMEOUT):
                        problems.append("connection still open after the response (expected close)")
                except ProtocolError as exc:
                    problems.append(f"bytes after the response instead of a close: {exc}")
            if case.expect.get("closed") is False:
                try:
                    again = conn.request("GET", "/echo/again")
                    if again.status != 200:
                        problems.append(f"a second request on the connection got {again.status}")
                except (ProtocolError, ConnectionClosed, ConnectionError, TimeoutError) as exc:
                    problems.append(f"connection not reusable after the response: {type(exc).__name__}: {exc}")
    problems += _gateway_problems(gw, first_line)
    assert not problems, _report(case, problems, detail)
