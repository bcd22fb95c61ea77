"""Fixtures for end-to-end tests: one backend process per session, and gateways built around it.

Markers (declared in pyproject.toml): `e2e` for tests that start the gateway, `slow` for load
tests. Tests that need their own timeout beyond the 120 s default use `pytest.mark.timeout(N)`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Backend, Gateway, start_backend, start_gateway

GatewayFactory = Callable[..., Gateway]


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    with start_backend("main") as b:
        yield b


@pytest.fixture
def gateway(backend: Backend, tmp_path: Path) -> Iterator[GatewayFactory]:
    """`gateway(config=None, **overrides) -> Gateway`: a started gateway, ready on `.port`, with
    `config` or else `procs.gateway_config(backend.port, **overrides)`; every one started is killed
    (whole process group) at teardown."""
    started: list[Gateway] = []

    def make(config: Mapping[str, Any] | None = None, **overrides: Any) -> Gateway:
        gw = start_gateway(backend, tmp_path / f"gateway{len(started)}", config, **overrides)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.close()
