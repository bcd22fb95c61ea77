"""`auth` (DESIGN §4, §8; docs/security.md): the named authentication schemes routes refer to, and
a route's `auth` and `require`.

Files an auth names (a JWKS file, a secret file, a keys file) are read here, at config load, so
that a bad one is a config error with its line and is never half-used; a reload reads them again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from fastgw.auth.jwks import ASYMMETRIC, HMAC, parse_jwks

from ..model import (
    ApiKeyAuth,
    AuthSpec,
    IntrospectionAuth,
    JwtAuth,
    MtlsAuth,
    RateLimit,
    Require,
    Route,
    TokenSource,
)
from ..report import Context, Report, fields, named_items, section, shown, suggest
from ..units import parse_size
from ..validators import (
    TOKEN,
    editable_header,
    file_path,
    int_between,
    validate_bool,
    validate_duration,
    validate_positive_duration,
    validate_string,
)
from ..yamlsrc import Path, format_path, kind_of, parse
from .listen import is_loopback

__all__ = ["validate_auth", "validate_route_auth"]

TYPES = ("jwt", "api_key", "introspection", "mtls")
ALGORITHMS = (*ASYMMETRIC, *HMAC)
MIN_KEY = 16
"""Characters an API key needs at least (a guessable key is no protection)."""
MAX_CACHE = 10_000_000
# Headers no auth may claim for itself: removing them from every request would break requests.
_RESERVED_HEADERS = ("authorization", "cookie", "host", "content-type", "content-length")
_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


def validate_auth(report: Report, path: Path, value: Any, context: Context) -> Mapping[str, AuthSpec]:
    def item(report: Report, item_path: Path, name: str, body: Any) -> AuthSpec | None:
        return validate_auth_item(report, item_path, name, body, context)

    specs = named_items(report, path, value, "auth", "auth schemes", item)
    _check_header_clashes(report, path, specs)
    return MappingProxyType(specs)


def validate_auth_item(report: Report, path: Path, name: str, value: Any, context: Context) -> AuthSpec | None:
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping with a type ({', '.join(TYPES)}), got {kind_of(value)}")
        return None
    kind = value.get("type")
    if "type" not in value:
        report.error((*path, "type"), f"required key is missing (one of {', '.join(TYPES)})")
        return None
    if kind not in TYPES:
        hint = suggest(kind, TYPES) if isinstance(kind, str) else ""
        report.error((*path, "type"), f"expected one of {', '.join(TYPES)}, got {shown(kind)}{hint}")
        return None
    line = report.line(path)
    if kind == "jwt":
        return _jwt(report, path, name, value, context, line)
    if kind == "api_key":
        return _api_key(report, path, name, value, context, line)
    if kind == "introspection":
        return _introspection(report, path, name, value, context, line)
    return _mtls(report, path, name, value, line)


# ---- jwt ------------------------------------------------------------------------------------------

JWT_KEYS = (
    "type", "algorithms", "jwks", "jwks_refresh", "jwks_timeout", "jwks_ca", "secret", "secret_file", "issuer",
    "audience", "leeway", "require_exp", "from", "forward_claims", "consumer_claim", "cache_size", "max_token",
)


def _jwt(report: Report, path: Path, name: str, value: Any, context: Context, line: int) -> JwtAuth | None:
    present = section(report, path, value, JWT_KEYS, required=("algorithms",))
    if present is None or "algorithms" not in present:
        return None
    algorithms = report.check((*path, "algorithms"), present["algorithms"], validate_algorithms, None)
    validators: dict[str, Callable[[Any], Any]] = {
        "jwks_refresh": validate_positive_duration,
        "jwks_timeout": validate_positive_duration,
        "leeway": validate_duration,
        "require_exp": validate_bool,
        "consumer_claim": validate_string,
        "cache_size": int_between(0, MAX_CACHE),
        "max_token": validate_token_size,
        "issuer": strings("an issuer"),
        "audience": strings("an audience"),
    }
    kwargs: dict[str, Any] = fields(report, path, present, validators)
    bad = len(kwargs) != len([k for k in present if k in validators])
    sources = ("jwks", "secret", "secret_file")
    given = [k for k in sources if k in present]
    if len(given) != 1:
        what = "found " + " and ".join(given) if given else "none given"
        report.error(path, f"needs exactly one of jwks (a file or URL) or secret / secret_file (HS*): {what}")
        return None
    if algorithms is None:
        return None
    symmetric = [a for a in algorithms if a in HMAC]
    if "jwks" in present:
        if symmetric:
            report.error(
                (*path, "algorithms"),
                f"{', '.join(symmetric)} take a secret, not a JWKS: an HMAC key must never come from a public document",
            )
            bad = True
        jwks = present["jwks"]
        if isinstance(jwks, str) and jwks.startswith(("http://", "https://")):
            url = report.check((*path, "jwks"), jwks, validate_fetch_url, None)
            bad = bad or url is None
            kwargs["jwks_url"] = url
        else:
            jwks_file = report.check((*path, "jwks"), jwks, file_path(context.base_dir), None)
            if jwks_file is not None:
                try:
                    with open(jwks_file, "rb") as f:
                        parse_jwks(f.read())
                except OSError as exc:
                    report.error((*path, "jwks"), f"cannot read {jwks_file}: {exc.strerror}")
                    bad = True
                except ValueError as exc:
                    report.error((*path, "jwks"), f"{jwks_file}: {exc}")
                    bad = True
            kwargs["jwks_file"] = jwks_file
            bad = bad or jwks_file is None
            for key in ("jwks_refresh", "jwks_timeout", "jwks_ca"):
                if key in present:
                    report.error((*path, key), f"{key} applies to a JWKS URL; a file is re-read when it changes",
                                 at_key=True)
                    bad = True
        if "jwks_ca" in present and "jwks_url" in kwargs:
            from .tls import readable_ca

            ca = report.check((*path, "jwks_ca"), present["jwks_ca"], readable_ca(context.base_dir), None)
            kwargs["jwks_ca"] = ca
            bad = bad or kwargs["jwks_ca"] is None
    else:
        asymmetric = [a for a in algorithms if a not in HMAC]
        if asymmetric:
            report.error((*path, "algorithms"), f"{', '.join(asymmetric)} verify with public keys: give jwks")
            bad = True
        key = "secret" if "secret" in present else "secret_file"
        secret = report.check((*path, key), present[key], _secret(context.base_dir, key == "secret_file"), None)
        if secret is not None and symmetric:
            need = max(HMAC[a] for a in symmetric)
            if len(secret) < need:
                report.error((*path, key), f"{max(symmetric)} needs a secret of at least {need} bytes "
                                           f"(RFC 7518 §3.2), got {len(secret)}")
                bad = True
        bad = bad or secret is None
        kwargs["secret"] = secret
        for extra in ("jwks_refresh", "jwks_timeout", "jwks_ca"):
            if extra in present:
                report.error((*path, extra), f"{extra} applies to a JWKS URL", at_key=True)
                bad = True
    if "from" in present:
        found = validate_sources(report, (*path, "from"), present["from"])
        bad = bad or found is None
        kwargs["sources"] = found
    if "forward_claims" in present:
        forward = validate_forward_claims(report, (*path, "forward_claims"), present["forward_claims"])
        bad = bad or forward is None
        kwargs["forward_claims"] = forward
    if bad:
        return None
    return JwtAuth(name=name, algorithms=algorithms, line=line, **kwargs)


def validate_algorithms(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must not be empty: list the algorithms your issuer signs with")
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item.lower() == "none":
            raise ValueError("'none' (unsigned tokens) is never accepted")
        if item not in ALGORITHMS:
            hint = suggest(item, ALGORITHMS) if isinstance(item, str) else ""
            raise ValueError(f"unknown algorithm {shown(item)}{hint}; known: {', '.join(ALGORITHMS)}")
        if item not in out:
            out.append(item)
    return tuple(out)


def validate_token_size(value: Any) -> int:
    size = parse_size(value)
    if not 64 <= size <= 1024 * 1024:
        raise ValueError(f"must be from 64B to 1MiB, got {value!r}")
    return size


def strings(what: str) -> Callable[[Any], tuple[str, ...]]:
    def validate_strings(value: Any) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and v for v in items):
            raise ValueError(f"expected {what} (a string) or a non-empty list of them, got {shown(value)}")
        return tuple(items)

    return validate_strings


def validate_fetch_url(value: Any) -> str:
    """An https URL, or http to a loopback address (keys fetched in the clear could be swapped by
    anyone on the path)."""
    text = validate_string(value)
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an https:// URL, got {text!r}")
    if parts.scheme == "http":
        from ..model import Address

        if not is_loopback(Address(parts.hostname, port or 80)):
            raise ValueError(f"{text!r} is plain http to another host: use https (keys and tokens must not travel "
                             "in the clear)")
    if parts.fragment or parts.username:
        raise ValueError(f"{text!r}: no credentials or #fragment in the URL")
    return text


def _secret(base_dir: str, from_file: bool) -> Callable[[Any], bytes]:
    resolve = file_path(base_dir)

    def validate_secret(value: Any) -> bytes:
        if not from_file:
            return validate_string(value).encode()
        path = resolve(value)
        try:
            with open(path, "rb") as f:
                data = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        if not data:
            raise ValueError(f"{path} is empty")
        return data

    return validate_secret


def validate_sources(report: Report, path: Path, value: Any) -> tuple[TokenSource, ...] | None:
    """`header:NAME`, `cookie:NAME` or `query:NAME`, or a list of them (first found wins)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        report.error(path, "must not be empty (omit it for Authorization: Bearer)")
        return None
    out: list[TokenSource] = []
    for index, item in enumerate(items):
        item_path = (*path, index) if isinstance(value, list) else path
        kind, sep, name = item.partition(":") if isinstance(item, str) else ("", "", "")
        if not sep or kind not in ("header", "cookie", "query") or not TOKEN.fullmatch(name):
            report.error(item_path, f"expected header:NAME, cookie:NAME or query:NAME, got {shown(item)}")
            return None
        source = (kind, name.lower() if kind == "header" else name)
        if source in out:
            report.error(item_path, f"{item!r} is listed twice")
            return None
        out.append(source)  # type: ignore[arg-type]
    return tuple(out)


def validate_forward_claims(report: Report, path: Path, value: Any) -> tuple[tuple[str, str], ...] | None:
    """`{CLAIM: Header-Name}`."""
    if not isinstance(value, dict) or not value:
        report.error(path, f"expected a mapping of claim names to header names, got {kind_of(value)}")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for claim, header in value.items():
        item_path = (*path, str(claim))
        name = report.check(item_path, header, forwarded_header, None)
        if name is None:
            ok = False
        elif name in (h for _, h in out):
            report.error(item_path, f"header {header!r} carries another claim already")
            ok = False
        else:
            out.append((str(claim), name))
    return tuple(out) if ok else None


def forwarded_header(value: Any) -> str:
    name = editable_header("request")(value)
    if name in _RESERVED_HEADERS:
        raise ValueError(f"{value!r} cannot carry gateway-made values: it would be removed from every request")
    return name


# ---- api_key --------------------------------------------------------------------------------------

API_KEY_KEYS = ("type", "header", "query", "keys", "keys_file", "consumer_header")


def _api_key(report: Report, path: Path, name: str, value: Any, context: Context, line: int) -> ApiKeyAuth | None:
    present = section(report, path, value, API_KEY_KEYS)
    if present is None:
        return None
    kwargs: dict[str, Any] = {}
    ok = True
    if "header" in present and "query" in present:
        report.error(path, "give either header or query, not both")
        ok = False
    if "header" in present:
        kwargs["header"] = report.check((*path, "header"), present["header"], forwarded_header, None)
        ok = ok and kwargs["header"] is not None
    if "query" in present:
        query = present["query"]
        if not isinstance(query, str) or not query or any(c in query for c in "&=#? "):
            report.error((*path, "query"), f"expected a query parameter name, got {shown(query)}")
            ok = False
        kwargs["header"] = None
        kwargs["query"] = query
    kwargs["consumer_header"] = report.check(
        (*path, "consumer_header"), present.get("consumer_header", "X-Consumer"), forwarded_header, None
    )
    ok = ok and kwargs["consumer_header"] is not None
    if ("keys" in present) == ("keys_file" in present):
        report.error(path, "needs exactly one of keys (inline) or keys_file")
        return None
    if "keys" in present:
        keys = _keys(report, (*path, "keys"), present["keys"], lambda p, m: report.error(p, m))
    else:
        keys_file = report.check((*path, "keys_file"), present["keys_file"], file_path(context.base_dir), None)
        keys = _keys_file(report, (*path, "keys_file"), keys_file) if keys_file is not None else None
        kwargs["keys_file"] = keys_file
    if keys is None or not ok:
        return None
    return ApiKeyAuth(name=name, keys=MappingProxyType(keys), line=line, **kwargs)


def _keys(report: Report, path: Path, value: Any, error: Callable[[Path, str], None]) -> dict[bytes, str] | None:
    """`{CONSUMER: KEY or [KEYS]}`; a key is the key itself (at least MIN_KEY visible ASCII
    characters) or `sha256:HEX` (its digest)."""
    if not isinstance(value, dict) or not value:
        error(path, f"expected a mapping of consumer names to keys, got {kind_of(value)}")
        return None
    out: dict[bytes, str] = {}
    ok = True
    for consumer, keys in value.items():
        item_path = (*path, str(consumer))
        if not isinstance(consumer, str) or not TOKEN.fullmatch(consumer):
            error(item_path, f"consumer name {consumer!r} must be a token (letters, digits, -._~ ...)")
            ok = False
            continue
        for index, key in enumerate(keys if isinstance(keys, list) else [keys]):
            key_path = (*item_path, index) if isinstance(keys, list) else item_path
            try:
                digest = key_digest(key)
            except ValueError as exc:
                error(key_path, str(exc))
                ok = False
                continue
            if digest in out:
                error(key_path, f"this key is also {out[digest]!r}'s: each key names one consumer")
                ok = False
                continue
            out[digest] = consumer
    return out if ok else None


def key_digest(key: Any) -> bytes:
    if not isinstance(key, str):
        raise ValueError(f"expected a key (a string), got {shown(key)}")
    m = _SHA256.fullmatch(key)
    if m is not None:
        return bytes.fromhex(m.group(1))
    if any(not 0x21 <= ord(c) <= 0x7E for c in key):
        raise ValueError("a key is visible ASCII characters without spaces")
    if len(key) < MIN_KEY:
        raise ValueError(f"a key needs at least {MIN_KEY} characters, got {len(key)} (or give sha256:HEX)")
    return hashlib.sha256(key.encode()).digest()


def _keys_file(report: Report, path: Path, keys_file: str) -> dict[bytes, str] | None:
    """A YAML file of `CONSUMER: KEY or [KEYS]`; its problems are reported at the `keys_file` key
    as `FILE:LINE: where: message`."""
    try:
        with open(keys_file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        report.error(path, f"cannot read {keys_file}: {reason}")
        return None
    from ..yamlsrc import YamlSyntaxError

    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        report.error(path, f"{keys_file}:{exc.line}: {exc.message}")
        return None
    if document is None or document.data is None:
        report.error(path, f"{keys_file} is empty")
        return None

    def error(where: Path, message: str) -> None:
        report.error(path, f"{keys_file}:{document.line(where)}: {format_path(where) or '(root)'}: {message}")

    return _keys(report, (), document.data, error)


# ---- introspection --------------------------------------------------------------------------------

INTROSPECTION_KEYS = (
    "type", "url", "client_id", "client_secret", "client_secret_file", "timeout", "cache_ttl", "inactive_ttl", "ca",
    "from", "forward_claims", "consumer_claim", "cache_size", "max_token",
)


def _introspection(
    report: Report, path: Path, name: str, value: Any, context: Context, line: int
) -> IntrospectionAuth | None:
    present = section(report, path, value, INTROSPECTION_KEYS, required=("url", "client_id"))
    if present is None or "url" not in present or "client_id" not in present:
        return None
    validators: dict[str, Callable[[Any], Any]] = {
        "url": validate_fetch_url,
        "client_id": validate_string,
        "timeout": validate_positive_duration,
        "cache_ttl": validate_duration,
        "inactive_ttl": validate_duration,
        "consumer_claim": validate_string,
        "cache_size": int_between(0, MAX_CACHE),
        "max_token": validate_token_size,
    }
    kwargs = fields(report, path, present, validators)
    ok = len(kwargs) == len([k for k in present if k in validators])
    if "ca" in present:
        from .tls import readable_ca

        kwargs["ca"] = report.check((*path, "ca"), present["ca"], readable_ca(context.base_dir), None)
        ok = ok and kwargs["ca"] is not None
    if ("client_secret" in present) == ("client_secret_file" in present):
        report.error(path, "needs exactly one of client_secret or client_secret_file")
        return None
    key = "client_secret" if "client_secret" in present else "client_secret_file"
    secret = report.check((*path, key), present[key], _secret(context.base_dir, key == "client_secret_file"), None)
    if secret is None:
        return None
    try:
        kwargs["client_secret"] = secret.decode("utf-8")
    except UnicodeDecodeError:
        report.error((*path, key), "the client secret must be UTF-8 text")
        return None
    if "from" in present:
        kwargs["sources"] = validate_sources(report, (*path, "from"), present["from"])
        ok = ok and kwargs["sources"] is not None
    if "forward_claims" in present:
        kwargs["forward_claims"] = validate_forward_claims(report, (*path, "forward_claims"), present["forward_claims"])
        ok = ok and kwargs["forward_claims"] is not None
    if not ok:
        return None
    return IntrospectionAuth(name=name, line=line, **kwargs)


# ---- mtls -----------------------------------------------------------------------------------------


def _mtls(report: Report, path: Path, name: str, value: Any, line: int) -> MtlsAuth | None:
    present = section(report, path, value, ("type", "consumer", "consumer_header"))
    if present is None:
        return None
    consumer = present.get("consumer", "cn")
    if consumer not in ("cn", "subject"):
        report.error((*path, "consumer"), f"expected cn or subject, got {shown(consumer)}")
        return None
    header = report.check(
        (*path, "consumer_header"), present.get("consumer_header", "X-Consumer"), forwarded_header, None
    )
    if header is None:
        return None
    return MtlsAuth(name=name, consumer=consumer, consumer_header=header, line=line)


def _check_header_clashes(report: Report, path: Path, specs: Mapping[str, AuthSpec]) -> None:
    """A header that carries gateway-made values must not also be where a token or key is read:
    it is removed from every request, so those credentials could never arrive."""
    vouched = {h for s in specs.values() for h in _made_headers(s)}
    for name, spec in specs.items():
        read: list[str] = []
        if isinstance(spec, (JwtAuth, IntrospectionAuth)):
            read = [n for kind, n in spec.sources if kind == "header"]
        elif isinstance(spec, ApiKeyAuth) and spec.header:
            read = [spec.header]
        for header in read:
            if header in vouched:
                report.error((*path, name), f"reads credentials from {header!r}, which another auth forwards "
                                            "claims or a consumer in (removed from every client request)")


def _made_headers(spec: AuthSpec) -> list[str]:
    if isinstance(spec, (JwtAuth, IntrospectionAuth)):
        return [h for _, h in spec.forward_claims]
    return [spec.consumer_header]


# ---- routes ---------------------------------------------------------------------------------------

REQUIRE_KEYS = ("scope", "claims", "consumers")
_CLAIMS = (JwtAuth, IntrospectionAuth)


def validate_route_auth(report: Report, path: Path, value: Any, route: Route | None, context: Context) -> Route | None:
    """A route's `auth` (a name or a list: the first the request has credentials for decides) and
    `require`, and the check that its `claim:` and `consumer` rate-limit keys have an auth that
    provides them. Returns `route` with them set."""
    if not isinstance(value, dict):
        return route
    specs: Mapping[str, AuthSpec] = context.validated.get("auth") or {}
    declared = context.names("auth")
    names: list[str] = []
    ok = True
    if "auth" in value:
        raw = value["auth"]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            report.error((*path, "auth"), "must not be empty (omit auth for a route anyone may use)")
            ok = False
        for index, item in enumerate(items):
            item_path = (*path, "auth", index) if isinstance(raw, list) else (*path, "auth")
            if not isinstance(item, str) or item not in declared:
                hint = suggest(item, declared) if isinstance(item, str) else ""
                known = f"; defined: {', '.join(sorted(declared))}" if declared and not hint else ""
                report.error(item_path, f"unknown auth {shown(item)}{hint}{known}")
                ok = False
            elif item in names:
                report.error(item_path, f"auth {item!r} is listed twice")
                ok = False
            else:
                names.append(item)
    used = [specs[n] for n in names if n in specs]
    require = None
    if "require" in value:
        require = _require(report, (*path, "require"), value["require"])
        if require is None:
            ok = False
        elif not names:
            report.error((*path, "require"), "require needs auth on the route (who the requirements apply to)")
            ok = False
        elif (require.scopes or require.claims) and not all(isinstance(s, _CLAIMS) for s in used):
            without = [s.name for s in used if not isinstance(s, _CLAIMS)]
            report.error((*path, "require"), f"scope and claims need token claims, which auth {without[0]!r} "
                                             f"({specs[without[0]].type}) does not give")
            ok = False
    limits: Mapping[str, RateLimit] = context.validated.get("rate_limits") or {}
    raw_limits = value.get("rate_limit")
    for limit_name in raw_limits if isinstance(raw_limits, list) else [raw_limits]:
        spec = limits.get(limit_name) if isinstance(limit_name, str) else None
        if spec is None:
            continue
        if spec.key.startswith("claim:") or spec.key == "consumer":
            if not names:
                report.error((*path, "rate_limit"), f"rate limit {limit_name!r} is keyed by {spec.key}, which needs "
                                                    "auth on the route")
                ok = False
            elif spec.key.startswith("claim:") and not all(isinstance(s, _CLAIMS) for s in used):
                report.error((*path, "rate_limit"), f"rate limit {limit_name!r} is keyed by {spec.key}, and this "
                                                    "route's auth gives no token claims")
                ok = False
    if route is None or not ok:
        return route if ok else None
    return replace(route, auth=tuple(names), require=require)


def _require(report: Report, path: Path, value: Any) -> Require | None:
    present = section(report, path, value, REQUIRE_KEYS)
    if present is None:
        return None
    if not present:
        report.error(path, f"needs at least one of {', '.join(REQUIRE_KEYS)}")
        return None
    scopes: tuple[str, ...] = ()
    if "scope" in present:
        raw = present["scope"]
        items = raw.split() if isinstance(raw, str) else raw
        good = isinstance(items, list) and all(isinstance(x, str) and x and " " not in x for x in items)
        if not good or not items:
            report.error((*path, "scope"), f'expected scopes ("a b" or [a, b]), got {shown(raw)}')
            return None
        if any('"' in s or "\\" in s for s in items):
            report.error((*path, "scope"), "a scope must not contain a quote or a backslash (RFC 6749 §3.3)")
            return None
        scopes = tuple(items)
    claims: list[tuple[str, tuple[str, ...]]] = []
    if "claims" in present:
        raw = present["claims"]
        if not isinstance(raw, dict) or not raw:
            report.error((*path, "claims"), f"expected a mapping of claim names to values, got {kind_of(raw)}")
            return None
        for claim, allowed in raw.items():
            values = allowed if isinstance(allowed, list) else [allowed]
            if not values or not all(isinstance(v, (str, int)) for v in values):
                report.error((*path, "claims", str(claim)), f"expected a value or a list of them, got {shown(allowed)}")
                return None
            claims.append((str(claim), tuple(_claim_text(v) for v in values)))
    consumers: tuple[str, ...] = ()
    if "consumers" in present:
        raw = present["consumers"]
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(isinstance(c, str) and c for c in items):
            report.error((*path, "consumers"), f"expected consumer names, got {shown(raw)}")
            return None
        consumers = tuple(items)
    return Require(scopes=scopes, claims=tuple(claims), consumers=consumers)


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

