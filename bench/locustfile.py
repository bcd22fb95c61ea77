"""Locust scenarios through the gateway: realistic request mixes at a fixed rate, to watch p50/p95/
p99 over time (wrk measures capacity; this measures latency at a rate users would send).

Run through `python -m bench.locust_run` (which starts the backend and the gateway, sets the rate
and plots the result), or directly:
`locust -f bench/locustfile.py --headless --host http://127.0.0.1:8080 --mix plain --user-rps 10`.

A mix is a tuple of weighted endpoints; each user sends one request per task at
`--user-rps` requests per second (`constant_throughput`), so the total rate is users × user-rps
whatever the latency, as long as the gateway keeps up. Routes with auth, limits or caching get
their own mix here, with the statuses they are expected to answer (a rate-limited route answers
429 by design, which is then not a failure).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    weight: int
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = (200,)


_ORDER = b'{"user":42,"items":[{"sku":"A-1001","qty":2},{"sku":"B-2002","qty":1}],"note":"leave at door"}'

#: Paths are those of the built-in backend (bench/scenarios.py): /small answers 12 B, /json4k 4 KiB.
MIXES: dict[str, tuple[Endpoint, ...]] = {
    "plain": (
        Endpoint("GET small", "GET", "/small", 6),
        Endpoint("GET 4 KiB JSON", "GET", "/json4k", 3),
        Endpoint("POST small JSON", "POST", "/small", 1, body=_ORDER, headers={"Content-Type": "application/json"}),
    ),
    # For your own service behind the gateway (--backend URL): only its root.
    "root": (Endpoint("GET /", "GET", "/", 1),),
}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--mix", choices=sorted(MIXES), default="plain", help="request mix (bench/locustfile.py MIXES)")
    parser.add_argument("--user-rps", type=float, default=10.0, help="requests per second of each user")


class GatewayUser(FastHttpUser):
    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.endpoints = MIXES[options.mix]
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
            if resp.status_code in endpoint.expect:
                resp.success()
            else:
                resp.failure(f"status {resp.status_code}, expected {' or '.join(map(str, endpoint.expect))}")
