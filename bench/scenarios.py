"""The scenario table of the wrk runs, and the built-in backend's answers they rely on.

A scenario is one row: what wrk sends, and the route (and its nginx equivalent) it needs. Adding a
JWT, rate-limited, cache-hit or aggregation scenario is one more row whose `fastgw_routes` /
`fastgw_sections` and `nginx_http` / `nginx_locations` set up the feature under test on its own
path prefix, so that every scenario runs against the same proxies started once per case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The built-in backend's small answer: 12 bytes, so that a run measures per-request work.
SMALL_BODY = "hello world\n"
SMALL_PATH = "/small"
JSON_PATH = "/json4k"
LIMITED_PREFIX = "/limited"
CORS_PREFIX = "/cors"
ACCESS_PREFIX = "/ipfilter"
AGGREGATE_PATH = "/agg3"
GZIP_PREFIX = "/gz"
JWT_PREFIX = "/jwt"
APIKEY_PREFIX = "/apikey"
CACHED_PREFIX = "/cached"
API_KEY = "bench-key-0123456789abcdef"
ORIGIN = "https://app.example.com"
JSON_SIZE = 4096


def json_body(size: int = JSON_SIZE) -> str:
    """A JSON document of exactly `size` bytes, shaped like an API list response."""
    items: list[dict[str, Any]] = []
    while True:
        i = len(items)
        item = {
            "id": i,
            "name": f"item-{i}",
            "price": round(1.25 * i, 2),
            "tags": ["red", "small"],
            "in_stock": i % 3 != 0,
        }
        if len(json.dumps({"items": items + [item], "pad": ""}, separators=(",", ":"))) > size:
            break
        items.append(item)
    head = json.dumps({"items": items, "pad": ""}, separators=(",", ":"))
    doc = head[:-2] + "x" * (size - len(head)) + '"}'
    assert len(doc) == size and json.loads(doc)
    return doc


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    path: str
    method: str = "GET"
    #: Request body size; the body is generated in the wrk script (`wrk.body`).
    body_bytes: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    #: The response depends on the built-in backend (e.g. its 4 KiB body): skipped with --backend.
    builtin_backend_only: bool = False
    #: Routes placed before the catch-all `/` route of the gateway's bench config.
    fastgw_routes: tuple[Mapping[str, Any], ...] = ()
    #: Top-level config sections the routes need (e.g. `rate_limits`, `auth`), merged in.
    fastgw_sections: Mapping[str, Any] = field(default_factory=dict)
    #: nginx directives at `http` level (e.g. `limit_req_zone`) and `location` blocks inside the
    #: proxy's server; `nginx_equivalent=False` when nginx cannot do the same work, so the
    #: scenario runs against direct and fastgw only and has no ratio.
    nginx_http: str = ""
    nginx_locations: str = ""
    nginx_equivalent: bool = True
    #: Sent to the proxies' TLS listener (both terminate TLS with the same certificate,
    #: `bench/tlscert.py`); not run against direct, whose backend speaks plain HTTP.
    tls: bool = False
    #: Files the fastgw routes name (a JWKS), written beside its config: name -> content.
    fastgw_files: Mapping[str, str] = field(default_factory=dict)
    #: What `direct` is measured on when the backend has no route of the scenario's own: one call
    #: of an aggregation, the uncompressed body of a compressed route (default: `path`).
    direct_path: str | None = None
    #: Backend requests one request of the scenario makes (an aggregation's calls): the `direct`
    #: figures are per call, so the scenario compares with this many direct calls.
    direct_calls: int = 1


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("get-small", "GET, 12 B response, keep-alive", SMALL_PATH),
    Scenario(
        "get-small-close",
        "GET, 12 B response, new connection per request (Connection: close)",
        SMALL_PATH,
        headers=(("Connection", "close"),),
    ),
    Scenario("get-4k", "GET, 4 KiB JSON response, keep-alive", JSON_PATH, builtin_backend_only=True),
    Scenario(
        "post-64k",
        "POST with a 64 KiB body, 12 B response, keep-alive",
        SMALL_PATH,
        method="POST",
        body_bytes=64 * 1024,
        headers=(("Content-Type", "application/octet-stream"),),
    ),
    # The cost of a rate-limit decision, not of 429s: a per-client-IP limit far above what a run
    # can send, on both proxies (nginx's limit_req zone is host-wide shared memory too).
    Scenario(
        "get-limited",
        "GET through a per-IP rate limit that never refuses, 12 B response, keep-alive",
        LIMITED_PREFIX + SMALL_PATH,
        fastgw_sections={"rate_limits": {"bench_ip": {"rate": "1000000/s", "burst": 1000000, "key": "ip"}}},
        fastgw_routes=(
            {
                "match": {"prefix": LIMITED_PREFIX}, "upstream": "backend", "strip_prefix": True,
                "rate_limit": "bench_ip",
            },
        ),
        nginx_http="    limit_req_zone $binary_remote_addr zone=bench_ip:1m rate=1000000r/s;",
        nginx_locations=(
            f"        location {LIMITED_PREFIX}/ {{\n"
            "            limit_req zone=bench_ip burst=1000000 nodelay;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
    ),
    # A CORS route answering an actual cross-origin request: the Origin check and the CORS
    # headers on the response. nginx does the same check with a map on $http_origin.
    Scenario(
        "get-cors",
        "GET with Origin through a CORS route (allowed origin), 12 B response, keep-alive",
        CORS_PREFIX + SMALL_PATH,
        headers=(("Origin", ORIGIN),),
        fastgw_routes=(
            {
                "match": {"prefix": CORS_PREFIX}, "upstream": "backend", "strip_prefix": True,
                "cors": {"origins": [ORIGIN, "https://*.example.org"], "credentials": True},
            },
        ),
        nginx_http=(
            "    map $http_origin $bench_cors_origin {\n"
            "        default \"\";\n"
            f"        \"{ORIGIN}\" $http_origin;\n"
            "        ~^https://[^/]+\\.example\\.org$ $http_origin;\n"
            "    }"
        ),
        nginx_locations=(
            f"        location {CORS_PREFIX}/ {{\n"
            "            add_header Access-Control-Allow-Origin $bench_cors_origin always;\n"
            "            add_header Access-Control-Allow-Credentials true always;\n"
            "            add_header Vary Origin always;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
    ),
    # An IP-filtered route: an allow list with a narrower deny inside it, decided on the client
    # address. nginx: allow/deny in the location (first match wins, so the deny comes first).
    Scenario(
        "get-ipfilter",
        "GET through an IP allow/deny list that allows the client, 12 B response, keep-alive",
        ACCESS_PREFIX + SMALL_PATH,
        fastgw_routes=(
            {
                "match": {"prefix": ACCESS_PREFIX}, "upstream": "backend", "strip_prefix": True,
                "access": {"allow": ["127.0.0.0/8", "10.0.0.0/8"], "deny": ["10.9.0.0/16", "127.0.0.99"]},
            },
        ),
        nginx_locations=(
            f"        location {ACCESS_PREFIX}/ {{\n"
            "            deny 10.9.0.0/16;\n"
            "            deny 127.0.0.99;\n"
            "            allow 127.0.0.0/8;\n"
            "            allow 10.0.0.0/8;\n"
            "            deny all;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
    ),
    # An aggregation route (issue 12): one request, three calls of the 4 KiB JSON made at once
    # through the internal client and merged into one 12 KiB object. It compares with the three
    # calls a client would make itself (`direct` measures one; direct_calls=3). nginx cannot merge
    # responses, so there is no nginx row.
    Scenario(
        "get-aggregate3",
        "GET of an aggregation route: three 4 KiB JSON calls fanned out and merged, keep-alive",
        AGGREGATE_PATH,
        builtin_backend_only=True,
        fastgw_routes=(
            {
                "match": {"path": AGGREGATE_PATH},
                "aggregate": {name: {"upstream": "backend", "path": JSON_PATH} for name in ("a", "b", "c")},
            },
        ),
        nginx_equivalent=False,
        direct_path=JSON_PATH,
        direct_calls=3,
    ),
    # The 4 KiB JSON gzip-compressed on the way (issue 12), next to get-4k, its plain twin; both
    # proxies at zlib level 6, the same minimum size and type list.
    Scenario(
        "get-4k-gzip",
        "GET, 4 KiB JSON response gzip-compressed by the proxy (Accept-Encoding: gzip), keep-alive",
        GZIP_PREFIX + JSON_PATH,
        headers=(("Accept-Encoding", "gzip"),),
        builtin_backend_only=True,
        fastgw_routes=(
            {
                "match": {"prefix": GZIP_PREFIX}, "upstream": "backend", "strip_prefix": True,
                "compress": {"types": ["application/json"], "min_size": "1KiB", "encodings": ["gzip"],
                             "level": {"gzip": 6}},
            },
        ),
        nginx_locations=(
            f"        location {GZIP_PREFIX}/ {{\n"
            "            gzip on;\n"
            "            gzip_types application/json;\n"
            "            gzip_min_length 1024;\n"
            "            gzip_comp_level 6;\n"
            "            gzip_vary on;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
        direct_path=JSON_PATH,
    ),
)


def _jwt_material() -> tuple[str, str]:
    """A JWKS (one ES256 key) and a token it verifies, valid for a day, made at import: the same
    token on every request, which is what a client holding its access token sends."""
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="bench", use="sig")
    now = int(time.time())
    claims = {"sub": "bench-user", "iss": "https://issuer.bench", "aud": "bench", "iat": now, "exp": now + 86400}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench"})
    return json.dumps({"keys": [jwk]}), token


JWKS_TEXT, JWT_TOKEN = _jwt_material()

SCENARIOS += (
    # A JWT route next to get-small (issue 10): ES256 verification once, then the verified-token
    # cache on every request (target: at least 0.9x get-small's req/s). nginx-light cannot verify
    # a JWT: no nginx row.
    Scenario(
        "get-jwt",
        "GET through a JWT route (ES256, JWKS file, one claim forwarded), token cached, keep-alive",
        JWT_PREFIX + SMALL_PATH,
        headers=(("Authorization", f"Bearer {JWT_TOKEN}"),),
        fastgw_sections={"auth": {"bench_jwt": {
            "type": "jwt", "algorithms": ["ES256"], "jwks": "bench-jwks.json", "issuer": "https://issuer.bench",
            "audience": "bench", "forward_claims": {"sub": "X-User-Id"},
        }}},
        fastgw_routes=(
            {"match": {"prefix": JWT_PREFIX}, "upstream": "backend", "strip_prefix": True, "auth": "bench_jwt"},
        ),
        fastgw_files={"bench-jwks.json": JWKS_TEXT},
        nginx_equivalent=False,
        direct_path=SMALL_PATH,
    ),
    # An API-key route: fastgw hashes the key (SHA-256) and looks the digest up; nginx looks the
    # plain key up in a map. Both forward the consumer name.
    Scenario(
        "get-apikey",
        "GET through an API-key route (X-API-Key, consumer forwarded), keep-alive",
        APIKEY_PREFIX + SMALL_PATH,
        headers=(("X-API-Key", API_KEY),),
        fastgw_sections={"auth": {"bench_keys": {"type": "api_key", "keys": {"bench": API_KEY}}}},
        fastgw_routes=(
            {"match": {"prefix": APIKEY_PREFIX}, "upstream": "backend", "strip_prefix": True, "auth": "bench_keys"},
        ),
        nginx_http=f'    map $http_x_api_key $bench_consumer {{ default ""; "{API_KEY}" "bench"; }}',
        nginx_locations=(
            f"        location {APIKEY_PREFIX}/ {{\n"
            '            if ($bench_consumer = "") { return 401; }\n'
            "            proxy_set_header X-Consumer $bench_consumer;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
        direct_path=SMALL_PATH,
    ),
    # TLS termination (issue 10), both proxies with the same RSA-2048 certificate, TLS 1.2+ and
    # Mozilla intermediate ciphers: keep-alive (the record layer's cost per request) and a new
    # connection per request (a full handshake each: wrk resumes no session). Target: 0.8x nginx.
    Scenario("tls-small", "GET over TLS, 12 B response, keep-alive", SMALL_PATH, tls=True),
    Scenario(
        "tls-small-close",
        "GET over TLS, 12 B response, a new connection (full handshake) per request",
        SMALL_PATH,
        headers=(("Connection", "close"),),
        tls=True,
    ),
)


def select(names: Sequence[str] | None, user_backend: bool) -> list[Scenario]:
    """The scenarios asked for, in table order. With the user's own backend the scenarios that
    only make sense against the built-in one are dropped unless asked for by name."""
    by_name = {s.name: s for s in SCENARIOS}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        return [s for s in SCENARIOS if s.name in names]
    return [s for s in SCENARIOS if not (user_backend and s.builtin_backend_only)]

SCENARIOS += (
    # A cache hit (issue 11): the 4 KiB JSON stored once, then every request answered from the
    # cache without the upstream. fastgw: a route ttl in its shared-memory cache; nginx: proxy_cache
    # (index in a shared-memory zone, the object in a file the page cache holds) with the same
    # validity. Both add one header saying it was a hit (Cache-Status and Age; X-Cache-Status).
    # Target: at least 1.0x nginx.
    Scenario(
        "get-cached-4k",
        "GET of a cached 4 KiB JSON: every request a hit, no upstream, keep-alive",
        CACHED_PREFIX + JSON_PATH,
        builtin_backend_only=True,
        fastgw_routes=(
            {"match": {"prefix": CACHED_PREFIX}, "upstream": "backend", "strip_prefix": True, "cache": {"ttl": "1h"}},
        ),
        nginx_http=(
            "    proxy_cache_path tmp/bench_cache levels=1:2 keys_zone=bench_cache:10m max_size=64m inactive=1h"
            " use_temp_path=off;"
        ),
        nginx_locations=(
            f"        location {CACHED_PREFIX}/ {{\n"
            "            proxy_cache bench_cache;\n"
            "            proxy_cache_valid 200 1h;\n"
            "            add_header X-Cache-Status $upstream_cache_status always;\n"
            "            proxy_pass http://backend/;\n"
            "        }\n"
        ),
        direct_path=JSON_PATH,
    ),
)
