"""Fixtures for end-to-end tests: one backend process per session, and gateways built around it.

Markers (declared in pyproject.toml): `e2e` for tests that start the gateway, `slow` for load
tests. Tests that need their own timeout beyond the 120 s default use `pytest.mark.timeout(N)`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Backend, Gateway, start_backend

GatewayFactory = Callable[..., Gateway]


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def gateway_config(backend_port: int, **overrides: Any) -> dict[str, Any]:
    """The reference config of the gateway contract: 2 workers, one route `/` to the backend
    (upstream `backend`), access log off. Keyword arguments are merged in (see `_merge`)."""
    base: dict[str, Any] = {
        "workers": 2,
        "grace_period": "5s",
        "limits": {
            "max_head": "32KiB", "max_headers": 100, "max_url": "8KiB", "max_body": "1MiB",
            "header_timeout": "10s", "body_timeout": "30s", "idle_timeout": "60s",
        },
        "upstreams": {
            "backend": {
                "targets": [f"127.0.0.1:{backend_port}"],
                "keepalive": 16,
                "timeouts": {"connect": "1s", "read": "5s"},
            },
        },
        "routes": [{"match": {"prefix": "/"}, "upstream": "backend"}],
        # YAML's `off` is the boolean false: written as such so the file reads as the contract's.
        "access_log": {"path": False},
    }
    return _merge(base, overrides)


def start_gateway(backend: Backend, workdir: Path, config: Mapping[str, Any] | None = None, **overrides: Any) -> Gateway:
    """A started gateway; the caller closes it."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Gateway(config if config is not None else gateway_config(backend.port, **overrides), workdir).start()


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    with start_backend("main") as b:
        yield b


@pytest.fixture
def gateway(backend: Backend, tmp_path: Path) -> Iterator[GatewayFactory]:
    """`gateway(config=None, **overrides) -> Gateway`: a started gateway, ready on `.port`;
    every one started is killed (whole process group) at teardown."""
    started: list[Gateway] = []

    def make(config: Mapping[str, Any] | None = None, **overrides: Any) -> Gateway:
        gw = start_gateway(backend, tmp_path / f"gateway{len(started)}", config, **overrides)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.close()
