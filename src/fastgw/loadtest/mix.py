"""A Locust request mix as data: weighted endpoints with the statuses each is expected to answer,
written to a JSON file that the packaged locustfile reads (Locust runs in its own process).

A rate-limited route can expect `(200, 429)`; an authenticated one carries an `Authorization`
header. `expect=()` accepts any status below 400 (for a service whose answers the caller does not
know in advance).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    weight: int = 1
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = (200,)

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 0 < status < 400


def dump(endpoints: Sequence[Endpoint], path: Path) -> None:
    path.write_text(
        json.dumps(
            [
                {
                    "name": e.name,
                    "method": e.method,
                    "path": e.path,
                    "weight": e.weight,
                    "body": None if e.body is None else e.body.decode("latin-1"),
                    "headers": dict(e.headers),
                    "expect": list(e.expect),
                }
                for e in endpoints
            ],
            indent=1,
        )
    )


def load(path: Path) -> tuple[Endpoint, ...]:
    items = json.loads(path.read_text())
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: a request mix is a non-empty JSON list of endpoints")
    return tuple(
        Endpoint(
            name=str(item["name"]),
            method=str(item["method"]),
            path=str(item["path"]),
            weight=int(item.get("weight", 1)),
            body=None if item.get("body") is None else str(item["body"]).encode("latin-1"),
            headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
            expect=tuple(int(s) for s in item.get("expect", (200,))),
        )
        for item in items
    )
