"""Type stubs for the private compiled proxy `fastgw._proxy` (exchange, pipeline, access log).
Internal to the gateway's workers; typed so that the Python modules around them check, and so
that Python filters know the request, reply and response-head API (see fastgw.pipeline)."""

from collections.abc import Callable, Iterable
from typing import Any

from fastgw._core import BucketTable, Limit, RouteMatch

FILTER_RESULTS: dict[str, int]
REQUEST_PHASES: dict[str, int]
RESPONSE_PHASES: dict[str, int]
HEADER_TABLE: tuple[tuple[bytes, int, int, str | None, str | None], ...]

def owned_header_reason(name: str, direction: str) -> str | None:
    """Why a route may not set or remove `name` in `direction` ("request" or "response")."""

def folds_to_owned(name: bytes) -> bool:
    """Whether `name` read with `_` as `-` is a header the gateway owns or frames with."""

def status_line(status: int) -> bytes:
    """`HTTP/1.1 NNN Reason\r\n`, the same table gateway-made replies and proxied heads use."""

def valid_host(host: bytes) -> bool:
    """RFC 9110 Host syntax: a host name of non-empty labels or an IP literal, optional port."""

class Reject(Exception):
    status: int
    message: str | None
    def __init__(self, status: int, message: str | None = None) -> None: ...

class Halt(Exception): ...

class RequestIds:
    def __init__(self, prefix: bytes) -> None: ...
    def next(self) -> bytes: ...

class RequestKey:
    """`RequestKey("ip" | "route" | "path" | "consumer")` or `RequestKey("header" | "cookie" |
    "query" | "claim", NAME)`: which bytes of a request name it (rate limits, hashing, splits)."""

    kind: int
    name: bytes | None
    def __init__(self, kind: str, name: str | None = None) -> None: ...
    def of(self, req: Request) -> bytes | None:
        """The key bytes, or None when the request has no such value."""

class Reply:
    """A response the gateway makes itself."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    is_error: bool
    message: str | None
    def __init__(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None: ...
    @staticmethod
    def error(status: int, message: str | None = None, headers: Iterable[tuple[bytes, bytes]] = ()) -> Reply:
        """A gateway error: the configured error format's body for `status`."""

class ResponseHead:
    """The response head response filters edit: `headers` is a flat [name, value, ...] list."""

    status: int
    headers: list[bytes]
    is_local: bool
    length: int | None
    """The upstream body's Content-Length; None when unknown (chunked, close-delimited, local)."""
    body: bytes | None
    """Set by a response filter on a local reply: the body sent instead of the reply's."""
    def get(self, lname: bytes) -> bytes | None: ...
    def remove(self, lname: bytes) -> None: ...
    def set(self, name: bytes, value: bytes) -> None: ...
    def add(self, name: bytes, value: bytes) -> None: ...
    def stream_through(self, filter: Any, transforms: bool = True) -> None: ...

class Request:
    """One request as every phase sees it."""

    method: bytes
    url: bytes
    path: bytes
    query: bytes
    host: bytes | None
    rid: bytes
    peer: bytes
    trusted_peer: bool
    ua: bytes | None
    referer: bytes | None
    params: RouteMatch | None
    phase: int
    ex: Any
    plan: Plan | None
    group: Any
    upstream: str
    reply: Reply | None
    resp_extra: bytes
    identity: Any
    claims: dict[str, Any] | None
    status: int
    sent: int
    @staticmethod
    def build(
        headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        method: bytes = b"GET",
        path: bytes = b"/",
        host: bytes | None = None,
        peer: bytes = b"127.0.0.1",
        query: bytes = b"",
    ) -> Request:
        """A request built without a connection, for tests and embedding."""
    def header(self, lname: bytes) -> bytes | None: ...
    def header_values(self, lname: bytes) -> list[bytes]: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes, bytes]]: ...
    @property
    def client_address(self) -> bytes: ...
    @property
    def version(self) -> str: ...
    @property
    def vars(self) -> dict[str, Any]: ...
    @property
    def route_params(self) -> dict[str, str] | None: ...
    def set_upstream_header(self, name: bytes, value: bytes) -> None: ...
    def remove_upstream_header(self, name: bytes) -> None: ...
    def add_upstream_lines(self, lines: bytes) -> None: ...
    def add_response_header(self, name: bytes, value: bytes) -> None: ...
    def resume(self, result: Reply | None = None) -> None: ...

class Filter:
    """Base of compiled filters."""

    request_phase: int
    response_phase: int
    target: Any
    @property
    def name(self) -> str: ...
    def run_request(self, req: Request) -> Reply | None: ...

class PyFilter(Filter):
    def __init__(self, obj: Any) -> None: ...

def as_filter(obj: Any) -> Filter: ...

class Rewrite:
    def __init__(self, prefix: str | None = None, template: str | None = None) -> None: ...

class Split:
    groups: tuple[Any, ...]
    names: tuple[str, ...]
    def __init__(
        self, groups: Iterable[Any], names: Iterable[str], weights: Iterable[int], sticky: RequestKey | None = None
    ) -> None: ...
    def choose(self, req: Request) -> int: ...

class Plan:
    """A route compiled for the request path, built once per worker generation."""

    index: int
    upstream: str
    group: Any
    split: Split | None
    route_key: bytes
    strip_len: int
    rewrite: Rewrite | None
    request_drop: tuple[bytes, ...]
    request_set: bytes
    response_drop: tuple[bytes, ...]
    response_set: bytes
    host_header: bytes | None
    request_filters: tuple[Filter, ...]
    response_filters: tuple[Filter, ...]
    responder: Filter | None
    def __init__(self, index: int, upstream: str = "") -> None: ...

class Condition:
    def __init__(self, kind: str, name: str, op: str, value: str | None = None) -> None: ...

class RouteChoice:
    def __init__(
        self, plans: Iterable[Plan], conditions: Iterable[Iterable[Condition]], fallback: Plan | None = None
    ) -> None: ...
    def choose(self, req: Request) -> Plan | None: ...

class AccessLog:
    fd: int
    on_error: Callable[[int], None] | None
    clock: WallClock
    def __init__(self, fd: int, format: str, clock: WallClock | None = None) -> None: ...
    def set_fd(self, fd: int) -> None: ...
    def tick(self) -> None: ...
    def timestamp(self, mono: float) -> bytes: ...
    def clf_time(self, mono: float) -> bytes: ...
    def write(self, peer: bytes, req: Request) -> None: ...
    def flush(self) -> None: ...
    @property
    def buffered(self) -> int: ...

class UpstreamCore:
    pool: Any
    transport: Any
    closed: bool
    reused: bool
    last_active: float
    def __init__(self, pool: Any) -> None: ...
    def release(self, reusable: bool) -> None: ...
    def abort(self) -> None: ...
    def timed_out(self) -> None: ...
    @property
    def busy(self) -> bool: ...

class ClientCore:
    transport: Any
    peer: bytes
    closing: bool
    last_active: float
    def __init__(self, rt: Any, listener: Any) -> None: ...
    def reject(self, status: int, message: str | None = None) -> None: ...
    def sweep(self, now: float) -> None: ...
    def drain(self) -> None: ...

class TokenCacheFilter(Filter):
    """The hit path of a JWT route's verified-token cache (fastgw.auth.build)."""

    hits: int
    def __init__(
        self,
        cache: dict[bytes, tuple[float, Any, Any, bytes]],
        slow: Callable[[Request], Any],
        check: Callable[[Request], Any] | None = None,
    ) -> None: ...

class ApiKeyFilter(Filter):
    """An API-key route's filter, compiled (fastgw.auth.build)."""

    def __init__(
        self,
        header: bytes,
        digest: Callable[[bytes], Any],
        equal: Callable[[bytes, bytes], bool],
        keys: dict[bytes, tuple[bytes, str, bytes]],
        missing: Reply,
        invalid: Reply,
        ambiguous: Reply,
        check: Callable[[Request], Any] | None = None,
    ) -> None: ...

class LocalLimitFilter(Filter):
    """The request filter of a route whose only limit is local-scope."""

    allowed: int
    refused: int
    shadow_refused: int
    def __init__(
        self,
        table: BucketTable,
        limit: Limit,
        limit_id: bytes,
        limit_line: bytes,
        key: RequestKey,
        route_keys: tuple[int, ...],
        enforce: bool,
    ) -> None: ...

class AccessFilter(Filter):
    """IP allow/deny on the client address: the most specific network decides."""

    def __init__(self, allow: Iterable[Any], deny: Iterable[Any]) -> None: ...
    def check(self, ip: bytes) -> bool: ...

class CorsFilter(Filter):
    def __init__(
        self,
        origins: Iterable[str],
        methods: Iterable[str],
        headers: Iterable[str] | None,
        expose_headers: Iterable[str],
        credentials: bool,
        max_age: float | None,
    ) -> None: ...

class CompressFilter(Filter):
    """The COMPRESS response filter: `policy` is a `fastgw.compress.Policy`; `streams` maps each
    coding to `(level, length) -> (compress piece, finish)`."""

    def __init__(self, policy: Any, streams: dict[str, Callable[[int, int | None], Any]]) -> None: ...

class FixedResponder(Filter):
    def __init__(self, reply: Reply) -> None: ...

class Redirector(Filter):
    def __init__(self, to: str, status: int) -> None: ...

# ---- metrics and tracing (metrics.pyx, tracing.pyx) ----------------------------------------

LATENCY_BOUNDS: tuple[float, ...]
METHOD_CLASSES: tuple[str, ...]
STATUS_CLASSES: tuple[str, ...]
METRICS_LAYOUT: dict[str, int]

class WallClock:
    """Wall-clock time from the monotonic clock, re-anchored every tick."""

    def __init__(self) -> None: ...
    def tick(self, wall: float, mono: float) -> None: ...
    def now(self) -> float: ...

class MetricsRecorder:
    spans_dropped: int
    @property
    def clock(self) -> WallClock: ...
    def __init__(
        self,
        clock: WallClock,
        row: Any = None,
        nroutes: int = 0,
        retries_at: int = 0,
        group_index: dict[Any, int] | None = None,
    ) -> None: ...
    def set_span_queue(self, spans: list[Any], max_spans: int) -> None: ...
    def record_request(self, req: Request) -> None: ...

class StatBlock:
    """A declared stat group's counters in this worker's row (fastgw.metrics.registry)."""

    @property
    def size(self) -> int: ...
    def __init__(self, view: Any) -> None: ...
    def inc(self, i: int, n: int = 1) -> None: ...
    def __getitem__(self, i: int) -> int: ...

class TraceIds:
    def __init__(self, seed: bytes | None = None) -> None: ...
    def draw(self) -> int: ...

class TraceSpan:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes | None
    tracestate: bytes | None
    flags: int
    sampled: bool
    start: float
    end: float
    status: int
    route: int
    method: bytes
    path: bytes
    host: bytes | None
    peer: bytes
    rid: bytes
    upstream: str
    sent: int
    @property
    def traceparent(self) -> bytes: ...

class TraceFilter(Filter):
    def __init__(self, clock: WallClock, sample: float = 1.0, ids: TraceIds | None = None) -> None: ...

def parse_traceparent(value: bytes) -> tuple[bytes, bytes, int] | None:
    """(trace_id, parent_id, flags) of a valid traceparent value, else None."""

# ---- the response cache (cachestore.pyx, cachepolicy.pyx, cache.pyx; docs/caching.md) ----------

def cache_layout(size: int) -> dict[str, int]:
    """How a shared cache mapping of `size` bytes is divided (blocks, entries, index, claims)."""

class CacheWrite:
    """One response being stored: `write()` body bytes, then `commit()` or `abort()`."""

    done: bool
    body_bytes: int
    def write(self, data: bytes) -> bool: ...
    def commit(self) -> bool: ...
    def abort(self) -> None: ...

class CacheStore:
    """The host's response cache in a shared mapping (init=True formats it: the master)."""

    size: int
    def __init__(
        self, buffer: Any, init: bool = False, row: int = 0, clock: Callable[[], int] | None = None
    ) -> None: ...
    def key_hash(self, key: bytes) -> int: ...
    def lookup(self, key: bytes, touch: bool = True) -> tuple[dict[str, int], bytes, bytes] | None: ...
    def writer(self, key: bytes, head: bytes = b"", *, body_hint: int = -1, limit: int = ..., status: int = 200,
               flags: int = 0, lifetime_ns: int = 0, age_ns: int = 0, swr_ns: int = 0, sie_ns: int = 0,
               stored_ns: int = -1) -> CacheWrite | None: ...
    def put(self, key: bytes, head: bytes = b"", body: bytes = b"", **meta: int) -> bool: ...
    def remove(self, key: bytes) -> int: ...
    def purge(self, key: bytes | None = None, prefix: bytes | None = None) -> int: ...
    def keys(self, limit: int = 100) -> list[bytes]: ...
    def release_dead(self, pid: int) -> int: ...
    def try_claim(self, key: bytes, timeout: float) -> tuple[str, int, int]: ...
    def claim_is_held(self, key: bytes, slot: int, token: int) -> bool: ...
    def claim_release(self, slot: int, token: int) -> None: ...
    def debug_lock(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def check(self) -> dict[str, int]: ...

class CacheFilter(Filter):
    """A cached route's filter: request phase CACHE, response phase STORE."""

    client: Any
    def __init__(self, store: CacheStore, ttl: float | None = None, max_object: int = ..., lock_timeout: float = 5.0,
                 stale_while_revalidate: float | None = None, stale_if_error: float | None = None,
                 strip: Iterable[bytes] = (), client: Any = None,
                 wall_clock: Callable[[], int] | None = None) -> None: ...
    def key_of(self, req: Request) -> bytes: ...

def cache_control(*values: bytes) -> dict[str, Any]: ...
def cache_freshness(headers: Iterable[tuple[bytes, bytes]], request_time: float, response_time: float,
                    ttl: float | None = None, status: int = 200) -> tuple[float | None, float]: ...
def cache_status(*, hit: bool = False, fwd: str | None = None, fwd_status: int = 0, ttl: int | None = None,
                 stored: bool = False, collapsed: bool = False, detail: str | None = None) -> bytes: ...
def http_date(seconds: int) -> bytes: ...
def parse_date(value: bytes, now: int = 0) -> int | None: ...
def sf_item(token: bytes, params: Iterable[tuple[bytes, Any]] = ()) -> bytes: ...
def sf_token(t: bytes) -> bytes: ...
def sf_key(k: bytes) -> bytes: ...
