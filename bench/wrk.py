"""Running wrk once and reading its figures.

The figures come from a `done()` hook in a generated Lua script, which prints wrk's own latency
histogram (the one `--latency` prints, in whole microseconds instead of rounded to two decimals,
and with p99.9) and its exact counters as one JSON line. `--latency` is still passed so that the
raw output kept in the JSON report reads as usual. The same script sets the method and body of
POST scenarios (`wrk.method`, `wrk.body`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.pinning import taskset
from bench.scenarios import Scenario

MARKER = "FASTGW_BENCH_RESULT"
PERCENTILES = ("50", "75", "90", "99", "99.9")

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,'
    .. '"50":%d,"75":%d,"90":%d,"99":%d,"99.9":%d}}\\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
""".replace("MARKER", MARKER)


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    #: connect/read/write/timeout are socket errors; status counts non-2xx/3xx responses.
    errors: dict[str, int]
    #: min, mean, stdev, max and the percentiles of PERCENTILES, in microseconds.
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rps": self.rps}


def binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk not found: `make bench` installs it (Debian package wrk)")
    return path


def version() -> str:
    out = subprocess.run([binary(), "-v"], capture_output=True, text=True, check=False)
    m = re.match(r"wrk (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def script(scenario: Scenario) -> str:
    lines = []
    if scenario.method != "GET":
        lines.append(f'wrk.method = "{scenario.method}"')
    if scenario.body_bytes:
        lines.append(f'wrk.body = string.rep("x", {scenario.body_bytes})')
    return "\n".join(lines) + "\n" + _DONE


def parse_output(stdout: str) -> WrkResult:
    """The result line printed by the `done()` hook; wrk's other output is ignored."""
    for line in stdout.splitlines():
        if line.startswith(MARKER + " "):
            data = json.loads(line[len(MARKER) + 1 :])
            break
    else:
        raise WrkError("no result line in wrk's output (did the run end early?)")
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        bytes=int(data["bytes"]),
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
    )


@dataclass(frozen=True)
class Load:
    """How hard to push: the same for every target of a case."""

    threads: int
    connections: int
    #: wrk takes whole seconds.
    duration_s: int
    timeout_s: int = 5


def command(url: str, scenario: Scenario, load: Load, script_path: Path, cpus: tuple[int, ...] | None) -> list[str]:
    argv = [
        binary(),
        f"-t{load.threads}",
        f"-c{max(load.connections, load.threads)}",
        f"-d{load.duration_s}s",
        f"--timeout={load.timeout_s}s",
        "--latency",
        "-s",
        str(script_path),
    ]
    for name, value in scenario.headers:
        argv += ["-H", f"{name}: {value}"]
    return taskset(cpus, argv + [url])


def run(argv: list[str], load: Load) -> tuple[WrkResult, str]:
    """One bounded run: wrk stops itself after `-d`; the timeout only guards against a hang."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=load.duration_s + load.timeout_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(argv)}") from exc
    if out.returncode != 0:
        raise WrkError(f"wrk exited with {out.returncode}: {out.stderr.strip() or out.stdout.strip()}")
    return parse_output(out.stdout), out.stdout
