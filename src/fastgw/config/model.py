"""The validated, frozen configuration the runtime is built from.

Everything here is produced by `fastgw.config.load` and never mutated afterwards; request-time code
reads only the compiled plans derived from it (see `fastgw.routing`), never these objects directly.
Durations are float seconds, sizes are int bytes.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP address; `host` is an IP literal or name exactly as written (IPv6 without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listener:
    """`underscores_in_headers`: forward request header names containing `_` (dropped by
    default, since CGI-style backends read them as `-`)."""

    address: Address
    underscores_in_headers: bool = False
    tls: ListenerTls | None = None
    """TLS termination on this address (None: plain HTTP)."""


@dataclass(frozen=True, slots=True)
class Admin:
    """The admin API's listener. With a `token` (written in the config or read from a file),
    every request must carry `Authorization: Bearer TOKEN`; an admin listener on an address other
    than loopback must have one."""

    address: Address
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Limits:
    max_head: int = 32 * 1024
    max_headers: int = 100
    max_url: int = 8 * 1024
    max_body: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0
    lingering_time: float = 30.0
    lingering_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    address: Address
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 60.0


@dataclass(frozen=True, slots=True)
class ConnectionQueue:
    """Requests waiting for an upstream connection (per target, per worker)."""

    size: int = 0
    """At most this many wait; the next one gets 503 (0: no bound but the timeout)."""
    timeout: float | None = None
    """A request waits at most this long, then gets 503; None: the upstream's read timeout."""


Balance = Literal["weighted", "round_robin", "least_conn", "p2c_ewma", "hash"]


@dataclass(frozen=True, slots=True)
class HashKey:
    """What `balance: hash` hashes: the client IP, the normalized path, or the value of a request
    header or cookie (`name` lower-case for headers, as written for cookies)."""

    kind: Literal["ip", "path", "header", "cookie"] = "ip"
    name: str | None = None

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active HTTP probes of every target (one prober per host). `expect` holds inclusive status
    ranges; `jitter` is the most a wait between probes deviates from `interval`, either way."""

    path: str
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_after: int = 3
    healthy_after: int = 2
    expect: tuple[tuple[int, int], ...] = ((200, 399),)
    jitter: float = 0.5


@dataclass(frozen=True, slots=True)
class Outlier:
    """Passive health, per worker: `max_ejected` is a fraction of the upstream's targets. The
    defaults are what an upstream without an `outlier` key gets (DESIGN §8)."""

    consecutive_failures: int = 5
    eject_for: float = 30.0
    max_ejected: float = 0.5


RetryOn = str | int
"""`connect_error`, `reset`, `timeout`, or an upstream status."""


@dataclass(frozen=True, slots=True)
class Retries:
    """`attempts` counts every try, the first included; `budget` is a fraction of requests."""

    attempts: int = 2
    on: tuple[RetryOn, ...] = ("connect_error",)
    budget: float = 0.2
    per_try_timeout: float | None = None
    total_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    targets: tuple[Target, ...]
    keepalive: int = 32
    max_connections: int = 0
    """Open connections per target and worker at most (0: no cap)."""
    max_connecting: int = 32
    """Connects in progress per target and worker at most: a burst cannot flood the target's
    accept queue."""
    queue: ConnectionQueue = field(default_factory=ConnectionQueue)
    timeouts: Timeouts = field(default_factory=Timeouts)
    host_header: str | None = None
    balance: Balance = "weighted"
    hash_key: HashKey | None = None
    """Set exactly when `balance` is `hash`."""
    health: HealthCheck | None = None
    outlier: Outlier | None = field(default_factory=Outlier)
    """None with `outlier: off`: no target is ever ejected for failing."""
    retries: Retries = field(default_factory=Retries)
    tls: UpstreamTls | None = None
    """TLS to the targets (None: plain HTTP)."""


@dataclass(frozen=True, slots=True)
class HeaderOps:
    """Header edits in one direction. Names are stored lower-case; `set` replaces every existing
    header of that name."""

    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteHeaders:
    request: HeaderOps = field(default_factory=HeaderOps)
    response: HeaderOps = field(default_factory=HeaderOps)


@dataclass(frozen=True, slots=True)
class Condition:
    """A request condition of a route: header `name` (lower-case) or query parameter `name` is
    present (`op` "present"), equals `value` ("exact") or starts with it ("prefix")."""

    kind: Literal["header", "query"]
    name: str
    op: Literal["exact", "present", "prefix"]
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Exactly one of `path` (exact or with `{param}` / trailing `{name*}` segments) and `prefix`
    is set. `methods` is None for any method; `host` is lower-case without port, may start with
    `*.` for a suffix wildcard. `conditions` (headers, then query parameters) must all hold."""

    path: str | None = None
    prefix: str | None = None
    methods: tuple[str, ...] | None = None
    host: str | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Access:
    """IP access control on the client address (through `trusted_proxies`): the most specific
    matching network decides (deny on a tie); an address no rule matches is allowed only when
    `allow` is empty."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class Cors:
    """Cross-origin requests a route accepts. `origins`: exact origins, `scheme://*.domain` for
    any subdomain, or `*`. `headers` None: the headers a preflight asks for are allowed."""

    origins: tuple[str, ...]
    methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    headers: tuple[str, ...] | None = None
    expose_headers: tuple[str, ...] = ()
    credentials: bool = False
    max_age: float | None = None


@dataclass(frozen=True, slots=True)
class Respond:
    """A fixed response the gateway gives itself (maintenance pages)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Redirect:
    """`to` may hold `{path}` (the normalized request path), `{query}` (with its `?`, or empty)
    and the route's `{param}` captures."""

    to: str
    status: int = 308


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The path the upstream sees: the route's prefix replaced by `prefix`, or the template
    `path` filled with the route's `{param}` captures."""

    prefix: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Bridge:
    """A WebSocket route the gateway terminates itself (`fastgw.bridge`, docs/configuration.md
    #websocket-bridge): each client message is an HTTP POST of its payload to `path` on
    `upstream`, whose answer body goes back as a message; `connect_path` / `disconnect_path`
    (None: no such call) are POSTed when a connection opens (a non-2xx refuses the handshake) and
    when it ends. `route_key`: the dotted field of a JSON text message whose value is sent as the
    route key (None: always `$default`). Bounds: `max_message` bytes for a message either way (and
    an answer body), `max_in_flight` POSTs per connection, `max_queued` messages waiting for a
    client that reads slowly. `timeout` None: the upstream's own timeouts alone. `on_error`: what a
    failed call gives the client, an error message or a close (1011). `forward_headers`: lower-case
    handshake headers sent along with every call."""

    upstream: str
    path: str
    connect_path: str | None = None
    disconnect_path: str | None = None
    route_key: str | None = None
    max_message: int = 64 * 1024
    max_in_flight: int = 1
    max_queued: int = 64
    timeout: float | None = None
    on_error: Literal["message", "close"] = "message"
    forward_headers: tuple[str, ...] = ()


BRIDGE_IDLE_TIMEOUT = 600.0
"""Seconds of silence after which a bridged connection is closed, unless `idle_timeout` says."""


@dataclass(frozen=True, slots=True)
class WebSocket:
    """A route that forwards WebSocket upgrades: after the upstream's 101 the connection is a
    byte tunnel, closed after `idle_timeout` seconds of silence (None: the upstream's
    `timeouts.read`). With `bridge`, the gateway answers the handshake itself instead (`Bridge`;
    `idle_timeout` None: BRIDGE_IDLE_TIMEOUT)."""

    idle_timeout: float | None = None
    bridge: Bridge | None = None


@dataclass(frozen=True, slots=True)
class WeightedUpstream:
    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class AggregateCall:
    """One call of an aggregation route (`fastgw.aggregate`). `path` (with its query) and the
    header values are templates; `depends` names the calls whose answers they read (then it starts
    once those answered). `timeout` None: the upstream's own timeouts alone. `keep` and `drop`
    hold field names, dots for nested ones; `rename` maps top-level fields to new names."""

    name: str
    upstream: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    max_body: int = 1024 * 1024
    optional: bool = False
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    depends: tuple[str, ...] = ()


COMPRESS_ENCODINGS = ("zstd", "br", "gzip")
"""The content codings fastgw produces, in its default order of preference."""
COMPRESS_TYPES = (
    "text/*", "application/json", "application/*+json", "application/javascript", "application/xml",
    "application/*+xml", "image/svg+xml",
)


DEFAULT_CACHE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_OBJECT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RouteCache:
    """A route's response caching (`fastgw.cache`, docs/caching.md): `ttl` (seconds) for responses
    without explicit freshness, None to store only those that state it; bodies over `max_object`
    bytes stream through unstored; a miss waits at most `lock_timeout` for another request fetching
    the same key; `stale_while_revalidate` / `stale_if_error` (seconds) for responses naming none."""

    ttl: float | None = None
    max_object: int = DEFAULT_MAX_OBJECT
    lock_timeout: float = 5.0
    stale_while_revalidate: float | None = None
    stale_if_error: float | None = None


@dataclass(frozen=True, slots=True)
class Compress:
    """Response compression of a route (`fastgw.compress`): media type patterns (`type/*`,
    `type/*+suffix`), the smallest Content-Length compressed, the codings offered in order of
    preference, and a level per coding (brotli's is its quality)."""

    types: tuple[str, ...] = COMPRESS_TYPES
    min_size: int = 1024
    encodings: tuple[str, ...] = COMPRESS_ENCODINGS
    gzip_level: int = 6
    br_level: int = 4
    zstd_level: int = 3


@dataclass(frozen=True, slots=True)
class Route:
    """Where a route's requests go: exactly one of `upstream`, `upstreams` (a weighted split,
    sticky by `sticky` when set), `respond`, `redirect` and `aggregate`; `upstream` is "" for the
    others."""

    index: int
    match: Match
    upstream: str
    strip_prefix: bool = False
    headers: RouteHeaders = field(default_factory=RouteHeaders)
    line: int | None = None
    rate_limit: tuple[str, ...] = ()
    """Names of `rate_limits` checked on this route, in order."""
    upstreams: tuple[WeightedUpstream, ...] = ()
    sticky: HashKey | None = None
    rewrite: Rewrite | None = None
    access: Access | None = None
    cors: Cors | None = None
    respond: Respond | None = None
    redirect: Redirect | None = None
    websocket: WebSocket | None = None
    aggregate: tuple[AggregateCall, ...] = ()
    """The calls of an aggregation route (its terminal responder); empty for other routes."""
    compress: Compress | None = None
    auth: tuple[str, ...] = ()
    """Names of `auth` entries; a request passes with the first whose credentials it carries."""
    require: Require | None = None
    cache: RouteCache | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One named limit of `rate_limits`. `rate` is tokens per second (`rate_text` as written);
    `key` is `ip`, `route` or `header:NAME` (NAME lower-case). `redis`, `on_redis_error` and
    `redis_timeout` matter only when `scope` is `cluster` (the loader refuses them otherwise)."""

    name: str
    rate: float
    burst: int
    rate_text: str = ""
    key: str = "ip"
    scope: Literal["local", "cluster"] = "local"
    redis: str | None = None
    on_redis_error: Literal["open", "closed"] = "open"
    redis_timeout: float = 0.05
    enforce: bool = True
    line: int | None = None

    @property
    def identity(self) -> str:
        """What a limit's buckets belong to: a reload that keeps it keeps its buckets, a change
        of any part of it (not `enforce`, so that shadow mode can be switched off without a reset)
        starts it afresh."""
        return f"{self.name}|{self.rate!r}|{self.burst}|{self.key}|{self.scope}"


@dataclass(frozen=True, slots=True)
class RateLimitTable:
    """The host-wide shared-memory table of local-scope buckets; `capacity` slots of 16 bytes."""

    capacity: int = 65536


@dataclass(frozen=True, slots=True)
class ErrorBody:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Errors:
    format: Literal["json", "text"] = "json"
    bodies: Mapping[int, ErrorBody] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class AccessLog:
    """`path` is "stdout", "stderr", a file path, or None when access logging is off."""

    path: str | None = "stdout"
    format: Literal["json", "combined"] = "json"


@dataclass(frozen=True, slots=True)
class Metrics:
    """`enabled`: each worker records per-request metrics (the admin API's `/metrics` and the
    status page); off, only the master's own figures are served."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TraceExport:
    """OTLP/HTTP export of sampled spans: POSTed as protobuf to `endpoint` (`.../v1/traces`) by
    each worker in batches of at most `max_batch`, every `interval`; at most `max_queue` spans wait
    (more are dropped and counted)."""

    endpoint: str
    interval: float = 1.0
    timeout: float = 5.0
    max_batch: int = 512
    max_queue: int = 8192


@dataclass(frozen=True, slots=True)
class Tracing:
    """W3C Trace Context on every route: `sample` is the share of new traces (no valid incoming
    `traceparent`) recorded; a request with a parent follows its sampled flag."""

    sample: float = 1.0
    service_name: str = "fastgw"
    export: TraceExport | None = None


HIDDEN_BACKEND_HEADERS = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "via")
"""Response headers that name the backend's software, dropped by default (`hide_backend_headers`)."""


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    workers: int
    grace_period: float = 30.0
    listen: tuple[Listener, ...] = ()
    admin: Admin | None = None
    limits: Limits = field(default_factory=Limits)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    upstreams: Mapping[str, Upstream] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[Route, ...] = ()
    rate_limits: Mapping[str, RateLimit] = field(default_factory=lambda: MappingProxyType({}))
    rate_limit_table: RateLimitTable = field(default_factory=RateLimitTable)
    errors: Errors = field(default_factory=Errors)
    access_log: AccessLog = field(default_factory=AccessLog)
    pidfile: str | None = None
    hide_backend_headers: tuple[str, ...] = HIDDEN_BACKEND_HEADERS
    """Lower-case response header names never relayed from upstreams."""
    metrics: Metrics = field(default_factory=Metrics)
    tracing: Tracing | None = None
    """None without a `tracing` section: no route propagates or records traces."""
    access: Access | None = None
    """Access control for every route, checked before a route's own."""
    auth: Mapping[str, AuthSpec] = field(default_factory=lambda: MappingProxyType({}))
    cache_size: int = DEFAULT_CACHE_SIZE
    """Bytes of the host's response cache (index included), shared by all workers."""

    @property
    def auth_headers(self) -> tuple[str, ...]:
        """Lower-case names of the request headers the gateway vouches for (every
        `forward_claims` header and `consumer_header`): removed from every request on every
        route, so that only the gateway can send them (DESIGN §8)."""
        return auth_header_names(self.auth)


# ---- TLS and authentication (issue 10) -----------------------------------------------------------

MOZILLA_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
"""The TLS 1.2 cipher list of Mozilla's "intermediate" server configuration (v5.7); TLS 1.3
suites are OpenSSL's defaults, all of which that configuration accepts."""


@dataclass(frozen=True, slots=True)
class CertKey:
    """A certificate chain and its private key (PEM files). `names`: the SNI names it serves
    (lower-case, `*.` for one label of wildcard); empty: the names of the certificate."""

    cert: str
    key: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenerTls:
    """`certificates[0]` is the default for a missing or unknown SNI name. `client_cert`:
    `off`, `optional` or `required` (mTLS, checked against `client_ca`)."""

    certificates: tuple[CertKey, ...]
    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str = MOZILLA_INTERMEDIATE
    client_ca: str | None = None
    client_cert: Literal["off", "optional", "required"] = "off"


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """TLS to an upstream's targets: verified against `ca` (else the system's CAs) unless
    `verify` is false; `sni` is the name sent and checked (default: `host_header`'s host, else
    the target's host)."""

    verify: bool = True
    ca: str | None = None
    sni: str | None = None
    client_cert: CertKey | None = None


TokenSource = tuple[Literal["header", "cookie", "query"], str]
"""Where a bearer token is read: ("header", lower-case name), ("cookie", name) or ("query",
name). ("header", "authorization") means the `Bearer` scheme of RFC 6750."""
BEARER: tuple[TokenSource, ...] = (("header", "authorization"),)


@dataclass(frozen=True, slots=True)
class JwtAuth:
    """JWT validation (DESIGN §8). Exactly one of `jwks_file`, `jwks_url` and `secret` is set:
    asymmetric algorithms take keys from a JWKS, HS* a shared secret. `forward_claims` maps claim
    names to lower-case header names."""

    name: str
    algorithms: tuple[str, ...]
    jwks_file: str | None = None
    jwks_url: str | None = None
    secret: bytes | None = field(default=None, repr=False)
    jwks_refresh: float = 300.0
    jwks_timeout: float = 5.0
    jwks_ca: str | None = None
    issuer: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    leeway: float = 0.0
    require_exp: bool = True
    sources: tuple[TokenSource, ...] = BEARER
    forward_claims: tuple[tuple[str, str], ...] = ()
    consumer_claim: str = "sub"
    cache_size: int = 10_000
    max_token: int = 16 * 1024
    line: int | None = None
    type: Literal["jwt"] = "jwt"


@dataclass(frozen=True, slots=True)
class ApiKeyAuth:
    """API keys from header `header` or query parameter `query`. `keys` maps the SHA-256 digest
    of each key to its consumer name; the keys themselves are not kept."""

    name: str
    keys: Mapping[bytes, str] = field(repr=False)
    header: str | None = "x-api-key"
    query: str | None = None
    keys_file: str | None = None
    consumer_header: str = "x-consumer"
    line: int | None = None
    type: Literal["api_key"] = "api_key"


@dataclass(frozen=True, slots=True)
class IntrospectionAuth:
    """OAuth2 token introspection (RFC 7662) of opaque bearer tokens at `url`, authenticated with
    HTTP Basic `client_id`:`client_secret`. Active results are cached until their `exp`, at most
    `cache_ttl`; inactive ones for `inactive_ttl`."""

    name: str
    url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 2.0
    cache_ttl: float = 300.0
    inactive_ttl: float = 10.0
    ca: str | None = None
    sources: tuple[TokenSource, ...] = BEARER
    forward_claims: tuple[tuple[str, str], ...] = ()
    consumer_claim: str = "sub"
    cache_size: int = 10_000
    max_token: int = 4096
    line: int | None = None
    type: Literal["introspection"] = "introspection"


@dataclass(frozen=True, slots=True)
class MtlsAuth:
    """The client certificate a listener verified (`client_cert` on its `tls`): the consumer is
    its subject's common name (`consumer: cn`) or whole subject (`subject`, RFC 4514)."""

    name: str
    consumer: Literal["cn", "subject"] = "cn"
    consumer_header: str = "x-consumer"
    line: int | None = None
    type: Literal["mtls"] = "mtls"


AuthSpec = JwtAuth | ApiKeyAuth | IntrospectionAuth | MtlsAuth


def auth_header_names(auth: Mapping[str, AuthSpec]) -> tuple[str, ...]:
    names: set[str] = set()
    for spec in auth.values():
        if isinstance(spec, (JwtAuth, IntrospectionAuth)):
            names.update(header for _, header in spec.forward_claims)
        else:
            names.add(spec.consumer_header)
    return tuple(sorted(names))


@dataclass(frozen=True, slots=True)
class Require:
    """What an authenticated request must also have on a route, else 403: every scope of
    `scopes` (in the space-separated `scope` claim, or the `scp` list), each claim of `claims`
    equal to one of its values (or, for a list claim, containing one), and a consumer among
    `consumers` when given."""

    scopes: tuple[str, ...] = ()
    claims: tuple[tuple[str, tuple[str, ...]], ...] = ()
    consumers: tuple[str, ...] = ()
