"""The machine block of the harness's reports: fastgw.loadtest.machine's, plus nginx's version and
the git commit measured (with `+dirty` when the tree has uncommitted changes)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bench import gateway, nginx
from fastgw.loadtest import machine, wrk
from fastgw.loadtest.machine import load_average

__all__ = ["describe", "git_commit", "load_average"]


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def describe(need_fastgw: bool = True) -> dict[str, Any]:
    return {
        **machine.describe({"nginx": nginx.version, "wrk": wrk.version}),
        "fastgw": gateway.version() if need_fastgw else None,
        "git_commit": git_commit(),
    }
