"""Retry timeouts enforced by the exchange (DESIGN §8, issue 4): `retries.per_try_timeout` ends a
silent attempt and lets the retry policy try another target; `retries.total_timeout` bounds the
whole request across attempts."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import http_get
from tests.support.procs import Backend, Gateway, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture()
def backends() -> Iterator[tuple[Backend, Backend]]:
    with start_backend("slow") as slow, start_backend("fast") as fast:
        assert http_get(slow.port, "/control/app/sleep-3000").status == 200
        yield slow, fast


def config_for(targets: list[Backend], retries: dict[str, Any]) -> dict[str, Any]:
    return {
        "workers": 1,
        "grace_period": "5s",
        "upstreams": {
            "app": {
                "targets": [f"127.0.0.1:{b.port}" for b in targets],
                "balance": "round_robin",
                "timeouts": {"connect": "1s", "read": "10s"},
                "retries": retries,
            }
        },
        "routes": [{"match": {"prefix": "/app"}, "upstream": "app"}],
        "access_log": {"path": "off"},
    }


def test_per_try_timeout_moves_a_silent_attempt_to_another_target(
    backends: tuple[Backend, Backend], tmp_path: Path
) -> None:
    slow, fast = backends
    retries = {"attempts": 2, "on": ["timeout"], "per_try_timeout": "300ms", "budget": "100%"}
    with Gateway(config_for([slow, fast], retries), tmp_path) as g:
        for _ in range(4):  # round robin: every other request starts on the slow target
            started = time.monotonic()
            resp = http_get(g.port, "/app", timeout=10)
            elapsed = time.monotonic() - started
            assert resp.status == 200, resp.summary()
            assert resp.json()["name"] == "fast"
            assert elapsed < 1.5  # one per-try timeout at most, never the 3 s of the slow target


def test_per_try_timeout_without_a_retry_is_504(backends: tuple[Backend, Backend], tmp_path: Path) -> None:
    slow, _ = backends
    retries = {"attempts": 1, "per_try_timeout": "300ms"}
    with Gateway(config_for([slow], retries), tmp_path) as g:
        started = time.monotonic()
        resp = http_get(g.port, "/app", timeout=10)
        assert resp.status == 504
        assert resp.json()["error"]["code"] == "upstream_timeout"
        assert time.monotonic() - started < 1.5


def test_total_timeout_bounds_all_attempts(backends: tuple[Backend, Backend], tmp_path: Path) -> None:
    slow, fast = backends
    assert http_get(fast.port, "/control/app/sleep-3000").status == 200
    retries = {"attempts": 3, "on": ["timeout"], "per_try_timeout": "400ms", "total_timeout": "600ms"}
    with Gateway(config_for([slow, fast], retries), tmp_path) as g:
        started = time.monotonic()
        resp = http_get(g.port, "/app", timeout=10)
        elapsed = time.monotonic() - started
    assert resp.status == 504, resp.summary()
    assert 0.5 < elapsed < 1.1  # the total (600 ms), not three per-try timeouts (1.2 s)
