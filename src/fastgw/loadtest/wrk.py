"""Running wrk once and reading its figures.

The figures come from a `done()` hook in a generated Lua script, which prints wrk's own latency
histogram (the one `--latency` prints, in whole microseconds instead of rounded to two decimals,
and with p99.9) and its exact counters as one JSON line. `--latency` is still passed so that the
raw output kept in the JSON report reads as usual. The same script sets the method and body of
requests that have one (`wrk.method`, `wrk.body`), and may add a `request()` function (a path or
header value per request, e.g. many routes or rate-limit keys).

Every run is bounded: wrk stops itself after `-d`, and `run` kills it if it has not ended well
after that.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from fastgw.loadtest.procs import taskset
from fastgw.loadtest.tools import wrk_binary

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


class RequestShape(Protocol):
    """What wrk sends, besides the URL: any object with these attributes (bench scenarios, the
    request of `fastgw bench`)."""

    @property
    def method(self) -> str: ...
    @property
    def body_bytes(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, str]]: ...


@dataclass(frozen=True)
class Shape:
    method: str = "GET"
    body_bytes: int = 0
    headers: tuple[tuple[str, str], ...] = ()


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
    """wrk's path; MissingTool (with how to install it) when it is not on PATH."""
    return wrk_binary()


def version() -> str:
    out = subprocess.run([binary(), "-v"], capture_output=True, text=True, check=False)
    m = re.match(r"wrk (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def script(shape: RequestShape, request_lua: str = "") -> str:
    """The Lua script of a run: method and body, an optional `request()` function (Lua source,
    e.g. from `rotate`), and the result hook."""
    lines = []
    if shape.method != "GET":
        lines.append(f'wrk.method = "{shape.method}"')
    if shape.body_bytes:
        lines.append(f'wrk.body = string.rep("x", {shape.body_bytes})')
    if request_lua:
        lines.append(request_lua)
    return "\n".join(lines) + "\n" + _DONE


def _lua_format(fmt: str) -> str:
    """A Lua string.format pattern with exactly one %d, safe to put between double quotes."""
    if any(c in fmt for c in '"\\\n\r') or fmt.replace("%%", "").count("%") != 1 or "%d" not in fmt:
        raise ValueError(f"a wrk rotation pattern needs exactly one %d and no quotes: {fmt!r}")
    return f'"{fmt}"'


def rotate(
    count: int, path_format: str | None = None, header: str | None = None, value_format: str | None = None
) -> str:
    """A `request()` function cycling through `count` requests, the i-th (0-based) with the path
    `path_format % i` (the URL's path when None) and, with `header`, that header set to
    `value_format % i`; each thread starts at its own offset. The requests are generated and
    formatted once, in `init`, not listed in the script (Lua limits the constants of one
    function), and a request costs wrk a table lookup, so the generator's cost stays flat as
    `count` grows, which is what the curves that use it change."""
    if count < 1 or (path_format is None and header is None) or ((header is None) != (value_format is None)):
        raise ValueError("rotate: a count, and a path pattern or a header with a value pattern")
    path = _lua_format(path_format) if path_format else "nil"
    value = _lua_format(value_format) if value_format else "nil"
    name = f'"{header}"' if header else "nil"
    if header and not re.fullmatch(r"[A-Za-z0-9-]+", header):
        raise ValueError(f"rotate: not a header name: {header!r}")
    return f"""\
local path_format = {path}
local header_name = {name}
local value_format = {value}
local count = {count}
local requests = {{}}
local next_index = 1
local threads_seen = 0
setup = function(thread)
  thread:set("offset", threads_seen * 7919)
  threads_seen = threads_seen + 1
end
init = function(args)
  for i = 1, count do
    local p = path_format and string.format(path_format, i - 1) or nil
    local h = nil
    if header_name then
      h = {{}}
      for k, v in pairs(wrk.headers) do h[k] = v end
      h[header_name] = string.format(value_format, i - 1)
    end
    requests[i] = wrk.format(nil, p, h)
  end
  next_index = (offset or 0) % count + 1
end
request = function()
  local r = requests[next_index]
  next_index = next_index % count + 1
  return r
end
"""


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


def command(
    url: str, shape: RequestShape, load: Load, script_path: Path, cpus: tuple[int, ...] | None = None
) -> list[str]:
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
    for name, value in shape.headers:
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
