"""The programs and optional packages a load test needs, and what to tell a user who lacks one.

wrk is a system program, Locust and matplotlib are the package's `bench` extra: none of them is
needed to run the gateway, so each is looked for only when a command is about to use it, and its
absence is a `MissingTool` whose message says how to install it (never an ImportError traceback).
"""

from __future__ import annotations

import importlib.util
import shutil

BENCH_EXTRA = "pip install 'fastgw[bench]'"
WRK_INSTALL = (
    "install it with your system's package manager, e.g. `apt-get install wrk` (Debian, Ubuntu), "
    "`brew install wrk` (macOS); or build it from https://github.com/wg/wrk"
)


class MissingTool(RuntimeError):
    """A program or optional Python package is not installed; the message says how to get it."""


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise MissingTool(f"wrk not found on PATH: {WRK_INSTALL}")
    return path


def require_module(module: str, purpose: str) -> None:
    """Raise MissingTool unless `module` can be imported (checked without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise MissingTool(f"{purpose} needs the Python package {module}, which is not installed: {BENCH_EXTRA}")


def have_module(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
