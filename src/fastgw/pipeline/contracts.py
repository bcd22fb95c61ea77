"""What the compiled proxy (`fastgw._proxy`) calls in Python: the worker's runtime, an upstream
group and its target pools, and the error renderer. The compiled code is written against these
shapes; the classes that implement them are `fastgw.runtime.Runtime`,
`fastgw.upstream.pool.UpstreamGroup` / `TargetPool` and `fastgw.http.replies.Replies`."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol


class Renderer(Protocol):
    def render(self, status: int, request_id: bytes, message: str | None) -> tuple[bytes, bytes]:
        """(content type, body) of a gateway error."""


class Runtime(Protocol):
    replies: Renderer
    trie: Any
    access: Any
    ids: Any
    connections: set[Any]
    draining: bool
    drain_started: float
    date_line: bytes
    """`date: <IMF-fixdate>\\r\\n` for gateway-made responses, renewed every tick."""
    max_head: int
    max_headers: int
    max_url: int
    max_body: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    lingering_time: float
    lingering_timeout: float

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    def internal_error(self, exc: BaseException | None) -> None: ...
    def upstream_error(self, target: str, kind: str, message: str, request_id: bytes) -> None:
        """An attempt failed for good (the client gets 502/503/504) or broke mid-response."""


class Pool(Protocol):
    """One target's keep-alive pool; `begin` once per attempt, then exactly one of
    `on_success`, `on_failure`, `on_cancel`."""

    label: str

    def begin(self) -> None: ...
    def take(self) -> Any: ...
    async def connect(self) -> Any: ...
    def give(self, conn: Any) -> None: ...
    def forget(self, conn: Any) -> None: ...
    def on_success(self, status: int, elapsed: float) -> None: ...
    def on_failure(self, kind: str) -> None: ...
    def on_cancel(self) -> None: ...


class Group(Protocol):
    """The targets of one upstream as the exchange sees them."""

    retry: Any
    retry_statuses: frozenset[int] | None
    default_host_line: bytes
    """`host: <first target>\\r\\n`, for HTTP/1.0 clients that sent no Host."""

    def pick(self, proto: Any, req: Any, exclude: Pool | None) -> Pool | None: ...
    def on_request(self) -> None: ...
