"""The Locust user of every Locust run (`fastgw bench --locust`, `python -m bench.locust_run`):
`locust -f <this file> --mix-file MIX.json --user-rps R ...`.

Each user sends one request per task, picked from the mix by weight, at `--user-rps` requests per
second (`constant_throughput`), so the total rate is users × user-rps whatever the latency, as
long as the service keeps up. A status the endpoint does not expect is a failure.

This module imports Locust (which patches the process with gevent): it is only ever loaded by
Locust itself, in its own process.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

from fastgw.loadtest import mix

_mixes: dict[str, tuple[mix.Endpoint, ...]] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--mix-file", default="", help="the request mix: a JSON file (fastgw.loadtest.mix)")
    parser.add_argument("--user-rps", type=float, default=10.0, help="requests per second of each user")


def _mix(path: str) -> tuple[mix.Endpoint, ...]:
    if path not in _mixes:
        if not path:
            raise SystemExit("locustfile: --mix-file is required")
        _mixes[path] = mix.load(Path(path))
    return _mixes[path]


class MixUser(FastHttpUser):
    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.endpoints = _mix(options.mix_file)
        self.weights = [e.weight for e in self.endpoints]
        self.pace = constant_throughput(options.user_rps)

    def wait_time(self) -> float:
        return self.pace(self)

    @task
    def request(self) -> None:
        endpoint = random.choices(self.endpoints, self.weights)[0]
        with self.client.request(
            endpoint.method,
            endpoint.path,
            data=endpoint.body,
            headers=dict(endpoint.headers),
            name=endpoint.name,
            catch_response=True,
        ) as resp:
            if endpoint.accepts(resp.status_code):
                resp.success()
            else:
                expected = " or ".join(map(str, endpoint.expect)) if endpoint.expect else "below 400"
                resp.failure(f"status {resp.status_code}, expected {expected}")
