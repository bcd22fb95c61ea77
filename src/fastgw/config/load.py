"""Validation of a config file into the frozen model (`fastgw.config.model`).

Every problem is collected in one pass, so a user fixes a config in one round instead of one error
per run. Leaf `validate_*` functions are pure: they take a plain value and return the model value
or raise ValueError with a message. Section `validate_*` functions compose them over a mapping and
record problems in a `Report` (which knows the source lines), substituting the model default for a
bad value so that validation can go on.
"""
from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from .model import (
    AccessLog,
    Address,
    Balance,
    Config,
    ErrorBody,
    Errors,
    HashKey,
    HeaderOps,
    HealthCheck,
    IPNetwork,
    Limits,
    Listener,
    Match,
    Outlier,
    RateLimit,
    RateLimitTable,
    Retries,
    RetryOn,
    Route,
    RouteHeaders,
    Target,
    Timeouts,
    Upstream,
)
from .units import parse_duration, parse_rate, parse_size
from .yamlsrc import Document, Path, YamlSyntaxError, format_path, kind_of, parse

__all__ = ["ConfigError", "load", "load_text"]

T = TypeVar("T")

MAX_WORKERS = 1024
MAX_ERROR_BODY = 64 * 1024
MAX_WEIGHT = 1000
MAX_ATTEMPTS = 10
MAX_THRESHOLD = 100
BALANCES = ("weighted", "round_robin", "least_conn", "p2c_ewma", "hash")
RETRY_CONDITIONS = ("connect_error", "reset", "timeout")
HASH_KEYS = ("ip", "path", "header:NAME", "cookie:NAME")
NOT_SUPPORTED = "is not supported yet by this version"

# Headers the gateway itself manages on every hop; a route may neither set nor remove them.
_FRAMING = "it frames the message, and the gateway manages framing itself"
_HOP_BY_HOP = "it is hop-by-hop: the gateway manages each connection's own"
_OWNED_HEADERS: dict[str, str] = {
    "host": "the client's Host is forwarded as is; set the upstream's host_header to change it",
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
    "trailer": _FRAMING,
    "connection": _HOP_BY_HOP,
    "keep-alive": _HOP_BY_HOP,
    "te": _HOP_BY_HOP,
    "upgrade": _HOP_BY_HOP,
    "proxy-connection": _HOP_BY_HOP,
}
# Headers whose value the gateway decides for each request (DESIGN §5, §8), per direction: an edit
# would fight the gateway's own value, or let a client-facing contract be switched off silently.
_FORWARDING = "the gateway sets it from the client connection (see trusted_proxies)"
_OWNED_BY_DIRECTION: dict[str, dict[str, str]] = {
    "request": {
        "x-forwarded-for": _FORWARDING,
        "x-forwarded-proto": _FORWARDING,
        "x-forwarded-host": _FORWARDING,
        "x-forwarded-port": _FORWARDING,
        "x-real-ip": _FORWARDING,
        "forwarded": _FORWARDING,
        "x-request-id": "the gateway keeps the client's well-formed ID or generates one",
    },
    "response": {"x-request-id": "the gateway returns the request's ID to the client"},
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
# Visible ASCII that a normalized request path may contain as is; '%' is checked separately, and
# '{' '}' only ever delimit parameters.
_PATH_CHARS = frozenset(chr(code) for code in range(0x21, 0x7F)) - frozenset("%#?\\{}")
# The router's limit on segments per pattern (`_MAX_SEGMENTS` in _core_src/trie.pxd).
MAX_SEGMENTS = 64
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


class ConfigError(Exception):
    """A config that must not be used. `problems` holds one `FILE:LINE: key.path: message` line
    per problem, in file order."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class Report:
    """Collects problems with their source lines while validation goes on."""

    def __init__(self, filename: str, document: Document) -> None:
        self.filename = filename
        self._document = document
        self._problems: list[tuple[int, str]] = []

    def error(self, path: Path, message: str, *, at_key: bool = False, line: int | None = None) -> None:
        """Record a problem at `line`, by default the line of the value at `path` (of its key when
        `at_key`, of the nearest parent when `path` is missing)."""
        if line is None:
            line = self._document.line(path, at_key=at_key)
        self._problems.append((line, f"{self.filename}:{line}: {format_path(path)}: {message}"))

    def check(self, path: Path, value: Any, validate: Callable[[Any], T], default: T) -> T:
        """`validate(value)`, or `default` after recording the problem it raised."""
        try:
            return validate(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return default

    def line(self, path: Path) -> int:
        return self._document.line(path)

    def raise_if_any(self) -> None:
        if self._problems:
            ordered = sorted(self._problems, key=lambda item: item[0])
            raise ConfigError([text for _, text in ordered])


# ---------------------------------------------------------------------------------------------
# Loading


def load(path: str) -> Config:
    """The validated config in the YAML (or JSON) file at `path`; raises ConfigError listing every
    problem found."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError([f"{path}:1: (root): cannot read the config file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: (root): the config file is not UTF-8 text"]) from None
    if path.endswith(".json"):
        # YAML forbids tabs as indentation, JSON allows them anywhere between tokens; JSON strings
        # cannot hold a raw tab, so replacing every tab keeps the content and the line numbers.
        text = text.replace("\t", " ")
    return load_text(text, path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_text(text: str, filename: str, base_dir: str) -> Config:
    """`load` for text already read; relative paths in it resolve against `base_dir`."""
    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        raise ConfigError([f"{filename}:{exc.line}: (root): {exc.message}"]) from None
    if document is None or document.data is None:
        raise ConfigError([f"{filename}:1: (root): the config file is empty (at least 'listen' is required)"])
    report = Report(filename, document)
    for problem in document.problems:
        report.error(problem.path, problem.message, line=problem.line)
    config = validate_config(report, document.data, source=os.path.join(base_dir, os.path.basename(filename)))
    report.raise_if_any()
    return config


# ---------------------------------------------------------------------------------------------
# Shared section helpers


def _suggest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section(
    report: Report,
    path: Path,
    value: Any,
    known: Collection[str],
    *,
    required: Collection[str] = (),
    unsupported: Collection[str] = (),
) -> dict[str, Any] | None:
    """The known keys of a mapping, after reporting unknown, not-yet-supported and missing ones;
    None (reported) when `value` is not a mapping at all."""
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping, got {kind_of(value)}")
        return None
    present: dict[str, Any] = {}
    for key, item in value.items():
        key_path = (*path, str(key))
        if key in unsupported:
            report.error(key_path, f"{key!r} {NOT_SUPPORTED}", at_key=True)
        elif key in known:
            present[key] = item
        else:
            suggestion = _suggest(str(key), [*known, *unsupported])
            report.error(key_path, f"unknown key {key!r}{suggestion}", at_key=True)
    for key in required:
        if key not in value:
            report.error((*path, key), "required key is missing")
    return present


def _list(report: Report, path: Path, value: Any, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        report.error(path, f"expected a list, got {kind_of(value)}")
        return []
    if non_empty and not value:
        report.error(path, "must not be empty")
    return value


def _fields(
    report: Report, path: Path, present: Mapping[str, Any], validators: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Model keyword arguments for the valid `present` keys that have a leaf validator."""
    kwargs: dict[str, Any] = {}
    for key, validate in validators.items():
        if key in present:
            try:
                kwargs[key] = validate(present[key])
            except ValueError as exc:
                report.error((*path, key), str(exc))
    return kwargs


# ---------------------------------------------------------------------------------------------
# Leaf validators: value → model value, or ValueError


def validate_workers(value: Any) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, got {value}")
    raise ValueError(f"expected 'auto' or an integer from 1 to {MAX_WORKERS}, got {_shown(value)}")


def validate_duration(value: Any) -> float:
    return parse_duration(value)


def validate_positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {value!r}")
    return seconds


def validate_size(value: Any) -> int:
    return parse_size(value)


def int_between(low: int, high: int | None = None) -> Callable[[Any], int]:
    """A validator for an integer in [low, high] (no upper bound when high is None)."""

    def validate_int(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_shown(value)}")
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return validate_int


def size_at_least(low: int, low_text: str) -> Callable[[Any], int]:
    def validate_min_size(value: Any) -> int:
        size = parse_size(value)
        if size < low:
            raise ValueError(f"must be at least {low_text}, got {value!r}")
        return size

    return validate_min_size


def validate_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_shown(value)}")
    return value


def validate_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_shown(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def one_of(*choices: str) -> Callable[[Any], str]:
    def validate_choice(value: Any) -> str:
        if value not in choices:
            options = ", ".join(choices)
            raise ValueError(f"expected one of {options}, got {_shown(value)}")
        return str(value)

    return validate_choice


def file_path(base_dir: str) -> Callable[[Any], str]:
    """A validator for a file path; relative paths are taken from the config file's directory."""

    def validate_file_path(value: Any) -> str:
        text = validate_string(value)
        if "\0" in text:
            raise ValueError("a file path must not contain NUL")
        return os.path.normpath(os.path.join(base_dir, text))

    return validate_file_path


def validate_host(value: str) -> str:
    """A host as written in an address: an IP literal (IPv6 without brackets) or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value or not _is_dns_name(value.lower()):
        raise ValueError(f"{value!r} is not an IP address or host name")
    return value


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_dns_name(name: str) -> bool:
    """Lower-case DNS name syntax; an all-digit last label is refused so that a mistyped IPv4
    address such as 10.0.0.256 is not taken for a name."""
    labels = name.split(".")
    return (
        len(name) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def validate_address(value: Any) -> Address:
    """`HOST:PORT`, with IPv6 hosts in brackets (`[::1]:8080`)."""
    if not isinstance(value, str):
        raise ValueError(f'expected an address "HOST:PORT", got {_shown(value)}')
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or ":" not in host:
            raise ValueError(f'expected "[IPv6]:PORT", got {value!r}')
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise ValueError(f'expected "HOST:PORT", got {value!r} (no port)')
        if ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets, as [{host}]:{port}")
    if not host:
        raise ValueError(f"missing host in {value!r} (use 0.0.0.0 or [::] for all interfaces)")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be from 1 to 65535, got {port!r}")
    return Address(validate_host(host), int(port))


def validate_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address or CIDR string, got {_shown(value)}")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)") from None


def validate_upstream_name(name: str) -> str:
    if not _UPSTREAM_NAME.fullmatch(name):
        raise ValueError(f"upstream name {name!r} may only contain letters, digits, '_', '.' and '-'")
    return name


def validate_host_header(value: Any) -> str:
    """A Host header value to send upstream: `name`, `name:port` or `[IPv6]:port`."""
    text = validate_string(value)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        validate_host(host)
        port = rest[1:] if rest.startswith(":") else None
        if ":" not in host or (rest and port is None):
            raise ValueError(f"{text!r} is not a valid Host header")
    else:
        host, sep, port_text = text.partition(":")
        validate_host(host)
        port = port_text if sep else None
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise ValueError(f"{text!r} has an invalid port")
    return text


def validate_route_path(value: Any) -> str:
    """An exact path, possibly with `{name}` segments and a last `{name*}` catch-all segment."""
    text = _route_string(value, "path")
    segments = _segments(text)
    names: set[str] = set()
    for position, segment in enumerate(segments):
        if "{" not in segment and "}" not in segment:
            _check_literal_segment(segment, position == len(segments) - 1)
            continue
        param = _PARAM.fullmatch(segment)
        if param is None:
            raise ValueError(
                f"segment {segment!r} must be literal text or one whole parameter such as {{id}}"
                " (parameter names are letters, digits and '_', not starting with a digit)"
            )
        name, catch_all = param.groups()
        if catch_all and position != len(segments) - 1:
            raise ValueError(f"catch-all {segment!r} must be the last segment")
        if name in names:
            raise ValueError(f"parameter name {name!r} is used twice")
        names.add(name)
    return text


def validate_prefix(value: Any) -> str:
    """A literal path prefix; a trailing slash is dropped, since a prefix matches whole segments
    either way (`/api` and `/api/` both match `/api`, `/api/` and `/api/x`)."""
    text = _route_string(value, "prefix")
    if "{" in text or "}" in text:
        raise ValueError("a prefix is literal; use 'path' for {parameters}")
    segments = _segments(text)
    for position, segment in enumerate(segments):
        _check_literal_segment(segment, position == len(segments) - 1)
    return text.rstrip("/") or "/"


def _route_string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} string starting with '/', got {_shown(value)}")
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")
    if "?" in value or "#" in value:
        raise ValueError("routes match the path only; remove the query ('?') or fragment ('#')")
    return value


def _segments(pattern: str) -> list[str]:
    segments = pattern[1:].split("/")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"has more than {MAX_SEGMENTS} segments")
    return segments


def _check_literal_segment(segment: str, last: bool) -> None:
    """Refuse what request path normalization makes impossible to match, so a route that could
    never match fails at load time instead of silently answering 404."""
    if segment == "":
        if not last:
            raise ValueError("empty segment ('//'): repeated slashes are merged before routing")
        return
    if segment in (".", ".."):
        raise ValueError(f"dot segment {segment!r}: dot segments are resolved before routing")
    position = 0
    while position < len(segment):
        char = segment[position]
        if char == "%":
            escape = segment[position + 1 : position + 3]
            if len(escape) != 2 or not all(c in "0123456789abcdefABCDEF" for c in escape):
                raise ValueError(f"invalid percent-escape in segment {segment!r}")
            decoded = chr(int(escape, 16))
            if escape != escape.upper():
                raise ValueError(
                    f"write '%{escape.upper()}' instead of '%{escape}': escapes are upper-cased before routing"
                )
            if decoded in _UNRESERVED:
                raise ValueError(f"write {decoded!r} instead of '%{escape}': it is decoded before routing")
            if decoded in "/\\\0":
                raise ValueError(f"'%{escape}' can never match: requests containing it are refused")
            position += 3
            continue
        if char == "\\":
            raise ValueError("a backslash can never match: requests containing one are refused")
        if char not in _PATH_CHARS:
            raise ValueError(f"character {char!r} is not allowed in a path (percent-encode it)")
        position += 1


def validate_methods(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of methods such as [GET, POST], got {_shown(value)}")
    if not value:
        raise ValueError("must list at least one method (omit 'methods' to match any method)")
    methods: list[str] = []
    for method in value:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(f"{method!r} is not a method name")
        if method == "*":
            raise ValueError("omit 'methods' to match any method")
        if method != method.upper():
            raise ValueError(f"methods are case-sensitive: write {method.upper()!r}, not {method!r}")
        if method in methods:
            raise ValueError(f"method {method!r} is listed twice")
        methods.append(method)
    return tuple(methods)


def validate_host_pattern(value: Any) -> str:
    """A route's host: a name or IP without port, optionally `*.suffix`; stored lower-case because
    host names are case-insensitive."""
    if not isinstance(value, str):
        raise ValueError(f"expected a host name string, got {_shown(value)}")
    host = value.lower()
    if host in ("", "*"):
        raise ValueError("omit 'host' to match any host")
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            raise ValueError(f"{value!r} is not a valid IPv6 literal") from None
    if ":" in host:
        raise ValueError(f"{value!r}: routes match the Host without its port; remove ':{host.rpartition(':')[2]}'")
    if _is_ipv4(host):
        return host
    name = host[2:] if host.startswith("*.") else host
    if "*" in name:
        raise ValueError("only a leading '*.' wildcard is supported (e.g. '*.example.com')")
    if not _is_dns_name(name):
        raise ValueError(f"{value!r} is not a valid host name")
    return host


def validate_header_name(value: Any) -> str:
    """A header name, lower-cased (HTTP header names are case-insensitive)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a valid header name")
    return value.lower()


def editable_header(direction: str) -> Callable[[Any], str]:
    """A validator for a header name that a route may set or remove in `direction` (request or
    response)."""
    owned = {**_OWNED_HEADERS, **_OWNED_BY_DIRECTION[direction]}

    def validate_editable_header(value: Any) -> str:
        name = validate_header_name(value)
        reason = owned.get(name)
        if reason is not None:
            raise ValueError(f"{value!r} cannot be set or removed: {reason}")
        return name

    return validate_editable_header


def validate_header_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"header values must be strings (quote it), got {_shown(value)}")
    for char in value:
        if char in "\r\n\0":
            raise ValueError("header values must not contain CR, LF or NUL")
        if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            raise ValueError(f"header values must not contain control character {char!r}")
        if not char.isascii():
            raise ValueError(f"header values must be ASCII, found {char!r}")
    return value


def validate_status(key: Any) -> int:
    status = int(key) if isinstance(key, str) and key.isdigit() else key
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"expected an error status from 400 to 599, got {key!r}")
    return status


def validate_balance(value: Any) -> Balance:
    if value not in BALANCES:
        suggestion = _suggest(value, BALANCES) if isinstance(value, str) else ""
        raise ValueError(f"expected one of {', '.join(BALANCES)}, got {_shown(value)}{suggestion}")
    return value  # type: ignore[no-any-return]


def validate_hash_key(value: Any) -> HashKey:
    """`ip`, `path`, `header:NAME` (any header, stored lower-case) or `cookie:NAME`."""
    hint = f"expected one of {', '.join(HASH_KEYS)}, got {_shown(value)}"
    if not isinstance(value, str):
        raise ValueError(hint)
    if value in ("ip", "path"):
        return HashKey(value)  # type: ignore[arg-type]
    kind, sep, name = value.partition(":")
    if not sep or kind not in ("header", "cookie"):
        raise ValueError(hint)
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid {kind} name")
    return HashKey(kind, name.lower() if kind == "header" else name)  # type: ignore[arg-type]


def validate_probe_path(value: Any) -> str:
    """The request target of a health probe: an origin-form path, optionally with a query."""
    text = validate_string(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/', got {text!r}")
    bad = next((c for c in text if not 0x21 <= ord(c) <= 0x7E or c == "#"), None)
    if bad is not None:
        raise ValueError(f"must be visible ASCII without spaces or '#', found {bad!r} (percent-encode it)")
    return text


def validate_status_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """A status (`200`), a range (`"200-399"`), or a non-empty list of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must not be empty")
    ranges = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, str) and re.fullmatch(r"[0-9]{3}-[0-9]{3}", item):
            low, high = int(item[:3]), int(item[4:])
        else:
            raise ValueError(
                f"expected a status such as 200, a range such as \"200-399\", or a list of them, got {_shown(item)}"
            )
        if not 100 <= low <= high <= 599:
            raise ValueError(f"statuses run from 100 to 599, low to high, got {item!r}")
        ranges.append((low, high))
    return tuple(ranges)


def validate_percent(value: Any) -> float:
    """`20%` → 0.2. A bare number is refused: 0.2 and 20 would both be plausible readings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write a percentage such as 50% (a bare number is ambiguous), got {_shown(value)}")
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)%", value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a percentage such as 50%, got {_shown(value)}")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"must be from 0% to 100%, got {value}")
    return percent / 100


def validate_retry_condition(value: Any) -> RetryOn:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 400 <= value <= 599:
            raise ValueError(f"a status to retry on must be from 400 to 599, got {value}")
        return value
    if value in RETRY_CONDITIONS:
        return value  # type: ignore[no-any-return]
    hint = ""
    if isinstance(value, str) and value.isdigit():
        hint = f" (write {value} without quotes)"
    elif isinstance(value, str):
        hint = _suggest(value, RETRY_CONDITIONS)
    raise ValueError(
        f"expected {', '.join(RETRY_CONDITIONS)} or a status from 400 to 599, got {_shown(value)}{hint}"
    )


def _seconds(value: float) -> str:
    return f"{value:g}s"


def validate_content_type(value: Any) -> str:
    return validate_header_value(validate_string(value))


def _shown(value: Any) -> str:
    """A value for an error message: short scalars as written, containers by their kind."""
    if isinstance(value, (dict, list)) or value is None:
        return kind_of(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return f"{kind_of(value)} {text if len(text) <= 40 else text[:37] + '...'}"


# ---------------------------------------------------------------------------------------------
# Section validators


TOP_LEVEL = (
    "workers",
    "grace_period",
    "pidfile",
    "listen",
    "admin",
    "limits",
    "trusted_proxies",
    "upstreams",
    "rate_limits",
    "rate_limit_table",
    "routes",
    "errors",
    "access_log",
)
TOP_LEVEL_UNSUPPORTED = ("auth", "cache_size")
ROUTE_UNSUPPORTED = ("auth", "cache", "aggregate", "websocket")
LISTEN_UNSUPPORTED = ("tls",)


def validate_config(report: Report, data: Any, source: str) -> Config:
    base_dir = os.path.dirname(source)
    present = _section(report, (), data, TOP_LEVEL, required=("listen",), unsupported=TOP_LEVEL_UNSUPPORTED)
    if present is None:
        return Config(source=source, workers=1)
    scalars = _fields(
        report,
        (),
        present,
        {"grace_period": validate_duration, "pidfile": file_path(base_dir)},
    )
    workers = report.check(("workers",), present.get("workers", "auto"), validate_workers, 1)
    listen = validate_listen(report, ("listen",), present["listen"]) if "listen" in present else ()
    admin = validate_admin(report, ("admin",), present["admin"], listen) if "admin" in present else None
    upstreams = validate_upstreams(report, ("upstreams",), present.get("upstreams", {}))
    upstream_names = _names(present.get("upstreams"))
    sections: dict[str, Any] = {}
    rate_limits = validate_rate_limits(report, ("rate_limits",), present.get("rate_limits", {}))
    limit_names = _names(present.get("rate_limits"))
    if "rate_limit_table" in present:
        sections["rate_limit_table"] = validate_rate_limit_table(
            report, ("rate_limit_table",), present["rate_limit_table"]
        )
    if "limits" in present:
        sections["limits"] = validate_limits(report, ("limits",), present["limits"])
    if "trusted_proxies" in present:
        sections["trusted_proxies"] = validate_trusted_proxies(report, ("trusted_proxies",), present["trusted_proxies"])
    if "routes" in present:
        sections["routes"] = validate_routes(report, ("routes",), present["routes"], upstream_names, limit_names)
    if "errors" in present:
        sections["errors"] = validate_errors(report, ("errors",), present["errors"], base_dir)
    if "access_log" in present:
        sections["access_log"] = validate_access_log(report, ("access_log",), present["access_log"], base_dir)
    return Config(
        source=source,
        workers=workers,
        listen=listen,
        admin=admin,
        upstreams=MappingProxyType(upstreams),
        rate_limits=MappingProxyType(rate_limits),
        **scalars,
        **sections,
    )


def _names(section: Any) -> set[str]:
    """Names declared under `upstreams` (or `rate_limits`), even those whose body is invalid, so
    that routes naming them are not also reported as dangling."""
    return {str(name) for name in section} if isinstance(section, dict) else set()


def validate_listen(report: Report, path: Path, value: Any) -> tuple[Listener, ...]:
    listeners: list[tuple[Path, Listener]] = []
    for index, item in enumerate(_list(report, path, value, non_empty=True)):
        item_path = (*path, index)
        if isinstance(item, str):
            report.error(item_path, f'expected a mapping, got string (write {{address: "{item}"}})')
            continue
        present = _section(report, item_path, item, ("address",), required=("address",), unsupported=LISTEN_UNSUPPORTED)
        if present is None or "address" not in present:
            continue
        address = report.check((*item_path, "address"), present["address"], validate_address, None)
        if address is None:
            continue
        for other_path, other in listeners:
            clash = _overlap(address, other.address)
            if clash:
                report.error((*item_path, "address"), f"{clash} {format_path(other_path)} ({other.address})")
                break
        listeners.append((item_path, Listener(address)))
    return tuple(listener for _, listener in listeners)


def _overlap(a: Address, b: Address) -> str | None:
    """Why two listen addresses would take the same connections (a clash, even where reuseport
    would let both bind), or None when they are distinct."""
    if a.port != b.port:
        return None
    if a.host == b.host:
        return "same address as"
    try:
        ip_a, ip_b = ipaddress.ip_address(a.host), ipaddress.ip_address(b.host)
    except ValueError:
        return None
    if ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified):
        return "overlaps"
    return None


def validate_admin(report: Report, path: Path, value: Any, listen: Iterable[Listener]) -> Address | None:
    present = _section(report, path, value, ("address",), required=("address",))
    if present is None or "address" not in present:
        return None
    address = report.check((*path, "address"), present["address"], validate_address, None)
    if address is None:
        return None
    for index, listener in enumerate(listen):
        clash = _overlap(address, listener.address)
        if clash:
            report.error((*path, "address"), f"{clash} listen[{index}] ({listener.address})")
            break
    return address


def validate_limits(report: Report, path: Path, value: Any) -> Limits:
    validators: dict[str, Callable[[Any], Any]] = {
        "max_head": size_at_least(1024, "1KiB"),
        "max_headers": int_between(1),
        "max_url": size_at_least(1, "1 byte"),
        "max_body": validate_size,
        "header_timeout": validate_positive_duration,
        "body_timeout": validate_positive_duration,
        "idle_timeout": validate_positive_duration,
    }
    present = _section(report, path, value, validators)
    return Limits(**_fields(report, path, present or {}, validators))


def validate_trusted_proxies(report: Report, path: Path, value: Any) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for index, item in enumerate(_list(report, path, value)):
        network = report.check((*path, index), item, validate_network, None)
        if network is not None:
            networks.append(network)
    return tuple(networks)


def _named_items(
    report: Report,
    path: Path,
    value: Any,
    name_word: str,
    items_word: str,
    validate_name: Callable[[str], str],
    validate_item: Callable[[Report, Path, str, Any], T | None],
) -> dict[str, T]:
    """A mapping of user-chosen names to items (upstreams, rate limits): each name checked, each
    item validated under its own key path; a bad one is reported and left out."""
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping of {name_word} names to {items_word}, got {kind_of(value)}")
        return {}
    items: dict[str, T] = {}
    for raw_name, body in value.items():
        name = str(raw_name)
        item_path = (*path, name)
        try:
            validate_name(name)
        except ValueError as exc:
            report.error(item_path, str(exc), at_key=True)
            continue
        item = validate_item(report, item_path, name, body)
        if item is not None:
            items[name] = item
    return items


def validate_upstreams(report: Report, path: Path, value: Any) -> dict[str, Upstream]:
    return _named_items(report, path, value, "upstream", "upstreams", validate_upstream_name, validate_upstream)


UPSTREAM_KEYS = (
    "targets", "keepalive", "timeouts", "host_header", "balance", "hash_key", "health", "outlier", "retries"
)


def validate_upstream(report: Report, path: Path, name: str, value: Any) -> Upstream | None:
    present = _section(report, path, value, UPSTREAM_KEYS, required=("targets",))
    if present is None:
        return None
    targets = validate_targets(report, (*path, "targets"), present["targets"]) if "targets" in present else ()
    kwargs = _fields(report, path, present, {"keepalive": int_between(0), "host_header": validate_host_header})
    if "timeouts" in present:
        kwargs["timeouts"] = validate_timeouts(report, (*path, "timeouts"), present["timeouts"])
    kwargs.update(_balancing(report, path, present, targets))
    if "health" in present:
        kwargs["health"] = validate_health(report, (*path, "health"), present["health"])
    if "outlier" in present:
        kwargs["outlier"] = validate_outlier(report, (*path, "outlier"), present["outlier"])
    if "retries" in present:
        kwargs["retries"] = validate_retries(report, (*path, "retries"), present["retries"])
    return Upstream(name=name, targets=targets, **kwargs)


def _balancing(report: Report, path: Path, present: Mapping[str, Any], targets: tuple[Target, ...]) -> dict[str, Any]:
    """`balance` and `hash_key`, checked against each other and against the target weights."""
    out: dict[str, Any] = {}
    balance: Balance | None = None
    if "balance" in present:
        balance = report.check((*path, "balance"), present["balance"], validate_balance, None)
        if balance is None:
            return out
        out["balance"] = balance
    if "hash_key" in present:
        key = report.check((*path, "hash_key"), present["hash_key"], validate_hash_key, None)
        if balance != "hash":
            shown = f"balance is {balance}" if balance else "balance is not set, so it is weighted"
            report.error((*path, "hash_key"), f"hash_key is only used with balance: hash ({shown})", at_key=True)
        elif key is not None:
            out["hash_key"] = key
    elif balance == "hash":
        out["hash_key"] = HashKey()
    if balance == "round_robin":
        for index, target in enumerate(targets):
            if target.weight != 1:
                report.error(
                    (*path, "balance"),
                    f"round_robin ignores weights, but targets[{index}] has weight {target.weight}: "
                    "use balance: weighted",
                )
                break
    return out


def validate_health(report: Report, path: Path, value: Any) -> HealthCheck | None:
    validators: dict[str, Callable[[Any], Any]] = {
        "path": validate_probe_path,
        "interval": validate_positive_duration,
        "timeout": validate_positive_duration,
        "unhealthy_after": int_between(1, MAX_THRESHOLD),
        "healthy_after": int_between(1, MAX_THRESHOLD),
        "expect": validate_status_ranges,
        "jitter": validate_duration,
    }
    present = _section(report, path, value, validators, required=("path",))
    if present is None:
        return None
    kwargs = _fields(report, path, present, validators)
    interval = kwargs.get("interval", HealthCheck("/").interval)
    if "jitter" not in kwargs:
        kwargs["jitter"] = interval / 10
    elif kwargs["jitter"] >= interval:
        shown = f"({_seconds(interval)}), got {present['jitter']!r}"
        report.error((*path, "jitter"), f"must be shorter than the interval {shown}")
        kwargs["jitter"] = interval / 10
    if "path" not in kwargs:
        return None
    return HealthCheck(**kwargs)


def validate_outlier(report: Report, path: Path, value: Any) -> Outlier:
    validators: dict[str, Callable[[Any], Any]] = {
        "consecutive_failures": int_between(1, 1000),
        "eject_for": validate_positive_duration,
        "max_ejected": validate_percent,
    }
    present = _section(report, path, value, validators)
    return Outlier(**_fields(report, path, present or {}, validators))


def validate_retries(report: Report, path: Path, value: Any) -> Retries:
    validators: dict[str, Callable[[Any], Any]] = {
        "attempts": int_between(1, MAX_ATTEMPTS),
        "budget": validate_percent,
        "per_try_timeout": validate_positive_duration,
        "total_timeout": validate_positive_duration,
    }
    present = _section(report, path, value, [*validators, "on"])
    if present is None:
        return Retries()
    kwargs = _fields(report, path, present, validators)
    if "on" in present:
        kwargs["on"] = _retry_conditions(report, (*path, "on"), present["on"])
    return Retries(**kwargs)


def _retry_conditions(report: Report, path: Path, value: Any) -> tuple[RetryOn, ...]:
    conditions: list[RetryOn] = []
    for index, item in enumerate(_list(report, path, value)):
        condition = report.check((*path, index), item, validate_retry_condition, None)
        if condition is None:
            continue
        if condition in conditions:
            report.error((*path, index), f"{condition!r} is listed twice")
            continue
        conditions.append(condition)
    return tuple(conditions)


def validate_targets(report: Report, path: Path, value: Any) -> tuple[Target, ...]:
    targets: list[Target] = []
    seen: dict[Address, int] = {}
    for index, item in enumerate(_list(report, path, value, non_empty=True)):
        item_path = (*path, index)
        target = validate_target(report, item_path, item)
        if target is None:
            continue
        if target.address in seen:
            report.error(item_path, f"duplicate target {target.address} (also targets[{seen[target.address]}])")
            continue
        seen[target.address] = index
        targets.append(target)
    return tuple(targets)


def validate_target(report: Report, path: Path, value: Any) -> Target | None:
    """`"HOST:PORT"` or `{address: "HOST:PORT", weight: N}`."""
    if isinstance(value, str):
        address = report.check(path, value, validate_address, None)
        return Target(address) if address is not None else None
    if not isinstance(value, dict):
        report.error(path, f'expected "HOST:PORT" or {{address: "HOST:PORT", weight: N}}, got {kind_of(value)}')
        return None
    present = _section(report, path, value, ("address", "weight"), required=("address",))
    if present is None or "address" not in present:
        return None
    address = report.check((*path, "address"), present["address"], validate_address, None)
    kwargs = _fields(report, path, present, {"weight": int_between(1, MAX_WEIGHT)})
    return Target(address, **kwargs) if address is not None else None


def validate_timeouts(report: Report, path: Path, value: Any) -> Timeouts:
    validators = {"connect": validate_positive_duration, "read": validate_positive_duration}
    present = _section(report, path, value, validators)
    return Timeouts(**_fields(report, path, present or {}, validators))


def validate_routes(
    report: Report, path: Path, value: Any, upstream_names: Collection[str], limit_names: Collection[str] = ()
) -> tuple[Route, ...]:
    routes: list[Route] = []
    for index, item in enumerate(_list(report, path, value)):
        route = validate_route(report, (*path, index), index, item, upstream_names, limit_names)
        if route is not None:
            routes.append(route)
    _report_duplicate_routes(report, path, routes)
    return tuple(routes)


def validate_route(
    report: Report,
    path: Path,
    index: int,
    value: Any,
    upstream_names: Collection[str],
    limit_names: Collection[str] = (),
) -> Route | None:
    present = _section(
        report,
        path,
        value,
        ("match", "upstream", "strip_prefix", "headers", "rate_limit"),
        # An aggregate route has no upstream of its own; the 'aggregate' key is reported already.
        required=("match",) if isinstance(value, dict) and "aggregate" in value else ("match", "upstream"),
        unsupported=ROUTE_UNSUPPORTED,
    )
    if present is None:
        return None
    match = validate_match(report, (*path, "match"), present["match"]) if "match" in present else None
    upstream = None
    if "upstream" in present:
        upstream = report.check((*path, "upstream"), present["upstream"], validate_string, None)
        if upstream is not None and upstream not in upstream_names:
            suggestion = _suggest(upstream, upstream_names)
            known = f"; defined: {', '.join(sorted(upstream_names))}" if upstream_names and not suggestion else ""
            report.error((*path, "upstream"), f"unknown upstream {upstream!r}{suggestion}{known}")
            upstream = None
    strip_prefix = report.check((*path, "strip_prefix"), present.get("strip_prefix", False), validate_bool, False)
    if strip_prefix and match is not None and match.prefix is None:
        report.error((*path, "strip_prefix"), "strip_prefix: true needs match.prefix (this route matches a path)")
    headers = validate_route_headers(report, (*path, "headers"), present["headers"]) if "headers" in present else None
    rate_limit = ()
    if "rate_limit" in present:
        rate_limit = validate_route_rate_limit(report, (*path, "rate_limit"), present["rate_limit"], limit_names)
    if match is None or upstream is None:
        return None
    return Route(
        index=index,
        match=match,
        upstream=upstream,
        strip_prefix=strip_prefix,
        headers=headers or RouteHeaders(),
        line=report.line(path),
        rate_limit=rate_limit,
    )


def validate_match(report: Report, path: Path, value: Any) -> Match | None:
    present = _section(report, path, value, ("path", "prefix", "methods", "host"))
    if present is None:
        return None
    if ("path" in present) == ("prefix" in present):
        report.error(path, "needs exactly one of 'path' (exact) or 'prefix'")
        return None
    kwargs = _fields(
        report,
        path,
        present,
        {
            "path": validate_route_path,
            "prefix": validate_prefix,
            "methods": validate_methods,
            "host": validate_host_pattern,
        },
    )
    if len(kwargs) != len(present):
        return None
    return Match(**kwargs)


def _report_duplicate_routes(report: Report, path: Path, routes: list[Route]) -> None:
    """Two routes with the same host and pattern and a common method: the second could never be
    chosen for those methods, which is always a mistake."""
    seen: dict[tuple[str | None, str, str], list[Route]] = {}
    for route in routes:
        match = route.match
        kind, pattern = ("path", match.path) if match.path is not None else ("prefix", match.prefix or "/")
        # Parameter names do not change what a pattern matches: /u/{id} and /u/{name} are one.
        key = (match.host, kind, _PARAM.sub(lambda param: "{*}" if param.group(2) else "{}", pattern))
        for earlier in seen.get(key, []):
            common = _common_methods(earlier.match.methods, match.methods)
            if common is not None:
                methods = ",".join(common) if common else "*"
                report.error(
                    (*path, route.index, "match"),
                    f"same match as routes[{earlier.index}] (host {match.host or '*'}, {kind} {pattern},"
                    f" methods {methods}): routes[{route.index}] could never be chosen",
                )
                break
        seen.setdefault(key, []).append(route)


def _common_methods(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Methods both match: () stands for every method, None for none in common."""
    if a is None and b is None:
        return ()
    if a is None or b is None:
        return a or b
    common = tuple(method for method in a if method in b)
    return common or None


def validate_route_headers(report: Report, path: Path, value: Any) -> RouteHeaders:
    present = _section(report, path, value, ("request", "response"))
    if present is None:
        return RouteHeaders()
    return RouteHeaders(
        **{
            direction: validate_header_ops(report, (*path, direction), direction, ops)
            for direction, ops in present.items()
        }
    )


def validate_header_ops(report: Report, path: Path, direction: str, value: Any) -> HeaderOps:
    present = _section(report, path, value, ("set", "remove"))
    if present is None:
        return HeaderOps()
    validate_name = editable_header(direction)
    edits: dict[str, Path] = {}

    def claim(name: str, name_path: Path) -> bool:
        if name in edits:
            report.error(name_path, f"header {name!r} is already edited at {format_path(edits[name])}")
            return False
        edits[name] = name_path
        return True

    set_ops: list[tuple[str, str]] = []
    if "set" in present:
        set_path = (*path, "set")
        if not isinstance(present["set"], dict):
            report.error(set_path, f"expected a mapping of header names to values, got {kind_of(present['set'])}")
        else:
            for raw_name, raw_value in present["set"].items():
                item_path = (*set_path, str(raw_name))
                name = report.check(item_path, raw_name, validate_name, None)
                header_value = report.check(item_path, raw_value, validate_header_value, None)
                if name is not None and header_value is not None and claim(name, item_path):
                    set_ops.append((name, header_value))
    removes: list[str] = []
    if "remove" in present:
        remove_path = (*path, "remove")
        for index, raw_name in enumerate(_list(report, remove_path, present["remove"])):
            item_path = (*remove_path, index)
            name = report.check(item_path, raw_name, validate_name, None)
            if name is not None and claim(name, item_path):
                removes.append(name)
    return HeaderOps(set=tuple(set_ops), remove=tuple(removes))


def validate_errors(report: Report, path: Path, value: Any, base_dir: str) -> Errors:
    present = _section(report, path, value, ("format", "bodies"))
    if present is None:
        return Errors()
    fmt = report.check((*path, "format"), present.get("format", "json"), one_of("json", "text"), "json")
    bodies: dict[int, ErrorBody] = {}
    if "bodies" in present:
        bodies_path = (*path, "bodies")
        raw_bodies = present["bodies"]
        if not isinstance(raw_bodies, dict):
            report.error(bodies_path, f"expected a mapping of statuses to bodies, got {kind_of(raw_bodies)}")
            raw_bodies = {}
        for raw_status, raw_body in raw_bodies.items():
            item_path = (*bodies_path, str(raw_status))
            status = report.check(item_path, raw_status, validate_status, None)
            body = validate_error_body(report, item_path, raw_body, fmt, base_dir)
            if status is None or body is None:
                continue
            if status in bodies:
                report.error(item_path, f"status {status} is given twice")
            bodies[status] = body
    return Errors(format="text" if fmt == "text" else "json", bodies=MappingProxyType(bodies))


def validate_error_body(report: Report, path: Path, value: Any, fmt: str, base_dir: str) -> ErrorBody | None:
    """`{body: TEXT}` or `{file: PATH}`, plus an optional content_type (default from `format`).
    Files are read now, so a missing file fails the load, not the first error response."""
    present = _section(report, path, value, ("body", "file", "content_type"))
    if present is None:
        return None
    if ("body" in present) == ("file" in present):
        report.error(path, "needs exactly one of 'body' or 'file'")
        return None
    default_type = "application/json" if fmt == "json" else "text/plain; charset=utf-8"
    content_type = report.check(
        (*path, "content_type"), present.get("content_type", default_type), validate_content_type, None
    )
    if "body" in present:
        text = report.check((*path, "body"), present["body"], _body_text, None)
        data = text.encode() if text is not None else None
        data_path = (*path, "body")
    else:
        data_path = (*path, "file")
        data = report.check(data_path, present["file"], _read_body_file(base_dir), None)
    if data is None or content_type is None:
        return None
    if _is_json_type(content_type):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            report.error(data_path, f"is not valid JSON but the content type is {content_type!r}; set content_type")
            return None
    return ErrorBody(body=data, content_type=content_type)


def _body_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_shown(value)}")
    if len(value.encode()) > MAX_ERROR_BODY:
        raise ValueError(f"is larger than {MAX_ERROR_BODY // 1024}KiB")
    return value


def _read_body_file(base_dir: str) -> Callable[[Any], bytes]:
    resolve = file_path(base_dir)

    def read_body_file(value: Any) -> bytes:
        path = resolve(value)
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_ERROR_BODY + 1)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_ERROR_BODY:
            raise ValueError(f"{path} is larger than {MAX_ERROR_BODY // 1024}KiB")
        return data

    return read_body_file


def _is_json_type(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def validate_access_log(report: Report, path: Path, value: Any, base_dir: str) -> AccessLog:
    present = _section(report, path, value, ("path", "format"))
    if present is None:
        return AccessLog()
    validators = {"path": _log_path(base_dir), "format": one_of("json", "combined")}
    return AccessLog(**_fields(report, path, present, validators))


def _log_path(base_dir: str) -> Callable[[Any], str | None]:
    resolve = file_path(base_dir)

    def validate_log_path(value: Any) -> str | None:
        # YAML 1.1 reads a bare `off` as false; both mean "no access log".
        if value is False or value == "off":
            return None
        if value in ("stdout", "stderr"):
            return str(value)
        return resolve(value)

    return validate_log_path


# ---------------------------------------------------------------------------------------------
# Rate limits (DESIGN §4, §8): named limits, the shared table, and the routes that use them


MAX_RATE = 1e9
"""One token per ns: the finest rate the bucket's integer ns arithmetic represents."""
MAX_CLUSTER_RATE = 1e6
"""The Redis script keeps time in µs (as float), so a cluster limit needs at least 1 µs per token."""
MAX_BURST = 10**9
MAX_SPAN = 2**61 / 1e9
"""Seconds a bucket may take to refill (burst / rate): 73 years, the table's 64-bit ns bound."""
MAX_REDIS_TIMEOUT = 10.0
MAX_TABLE_CAPACITY = 2**26
RATE_LIMIT_KEYS = ("ip", "route", "header:NAME", "claim:NAME", "consumer")
_CLUSTER_ONLY = ("redis", "on_redis_error", "redis_timeout")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def validate_rate(value: Any) -> tuple[float, str]:
    """Tokens per second, and the rate as written."""
    count, per = parse_rate(value)
    rate = count / per
    if rate > MAX_RATE:
        raise ValueError(f"{value!r} is above the maximum of {MAX_RATE:.0f}/s")
    return rate, str(value)


def validate_limit_name(name: str) -> str:
    if not _UPSTREAM_NAME.fullmatch(name):
        raise ValueError(f"rate limit name {name!r} may only contain letters, digits, '_', '.' and '-'")
    return name


def validate_limit_key(value: Any) -> str:
    """`ip`, `route` or `header:NAME` (stored `header:` + lower-case NAME). `claim:NAME` and
    `consumer` are keys of authenticated requests: refused until routes can have `auth`."""
    hint = f"expected one of {', '.join(RATE_LIMIT_KEYS)}, got {_shown(value)}"
    if not isinstance(value, str):
        raise ValueError(hint)
    if value in ("ip", "route"):
        return value
    kind, sep, name = value.partition(":")
    if value == "consumer" or (sep and kind == "claim"):
        if kind == "claim" and not name:
            raise ValueError("claim: needs a claim name, as in claim:sub")
        raise ValueError(f"key {value!r} requires auth on the route (not supported yet)")
    if not sep or kind != "header":
        suggestion = _suggest(value, ("ip", "route", "consumer"))
        raise ValueError(hint + suggestion)
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return f"header:{name.lower()}"


def validate_redis_url(value: Any) -> str:
    """`redis://[user:password@]host[:port][/db]`, `rediss://` (TLS) or `unix:///path.sock`."""
    text = validate_string(value)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in _REDIS_SCHEMES:
        schemes = ", ".join(_REDIS_SCHEMES)
        raise ValueError(f"expected a URL such as redis://127.0.0.1:6379/0 (schemes: {schemes}), got {text!r}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"a unix URL needs an absolute socket path, as unix:///run/redis.sock, got {text!r}")
        return text
    authority, _, db = rest.partition("/")
    hostport = authority.rpartition("@")[2]
    if not hostport:
        raise ValueError(f"missing host in {text!r}")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = hostport.partition(":")
    validate_host(host)
    if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise ValueError(f"port must be from 1 to 65535, got {port!r}")
    if db and not db.isdigit():
        raise ValueError(f"the database is a number (redis://host:port/0), got {db!r}")
    return text


def validate_redis_timeout(value: Any) -> float:
    seconds = validate_positive_duration(value)
    if seconds > MAX_REDIS_TIMEOUT:
        limit = f"{MAX_REDIS_TIMEOUT:.0f}s"
        raise ValueError(f"must be at most {limit} (requests never wait for Redis longer), got {value!r}")
    return seconds


def validate_rate_limits(report: Report, path: Path, value: Any) -> dict[str, RateLimit]:
    return _named_items(report, path, value, "rate limit", "limits", validate_limit_name, validate_rate_limit)


def validate_rate_limit(report: Report, path: Path, name: str, value: Any) -> RateLimit | None:
    """One limit; the default burst is one second of rate, rounded up (DESIGN §8)."""
    present = _section(
        report,
        path,
        value,
        ("rate", "burst", "key", "scope", "redis", "on_redis_error", "redis_timeout", "enforce"),
        required=("rate",),
    )
    if present is None or "rate" not in present:
        return None
    rate = report.check((*path, "rate"), present["rate"], validate_rate, None)
    kwargs = _fields(
        report,
        path,
        present,
        {
            "burst": int_between(1, MAX_BURST),
            "key": validate_limit_key,
            "scope": one_of("local", "cluster"),
            "redis": validate_redis_url,
            "on_redis_error": one_of("open", "closed"),
            "redis_timeout": validate_redis_timeout,
            "enforce": validate_bool,
        },
    )
    bad = len(kwargs) != len(present) - 1
    scope = present.get("scope", "local")
    if scope == "cluster":
        if "redis" not in present:
            report.error((*path, "redis"), "required key is missing (scope: cluster keeps its buckets in Redis)")
            bad = True
        if rate is not None and rate[0] > MAX_CLUSTER_RATE:
            report.error((*path, "rate"), f"a cluster limit may be at most {MAX_CLUSTER_RATE:.0f}/s, got {rate[1]!r}")
            bad = True
    elif scope == "local":
        for key in _CLUSTER_ONLY:
            if key in present:
                report.error((*path, key), f"{key!r} only applies to scope: cluster", at_key=True)
                bad = True
    if rate is None or bad:
        return None
    per_second, text = rate
    burst = kwargs.pop("burst", max(1, math.ceil(per_second)))
    if burst / per_second >= MAX_SPAN:
        report.error((*path, "burst"), f"burst / rate ({burst} / {text}) takes more than 73 years to refill")
        return None
    return RateLimit(name=name, rate=per_second, burst=burst, rate_text=text, line=report.line(path), **kwargs)


def validate_rate_limit_table(report: Report, path: Path, value: Any) -> RateLimitTable:
    validators = {"capacity": int_between(8, MAX_TABLE_CAPACITY)}
    present = _section(report, path, value, validators)
    return RateLimitTable(**_fields(report, path, present or {}, validators))


def validate_route_rate_limit(
    report: Report, path: Path, value: Any, limit_names: Collection[str]
) -> tuple[str, ...]:
    """A limit name or a non-empty list of them, each defined under `rate_limits`, once."""
    items: list[tuple[Path, Any]]
    if isinstance(value, list):
        if not value:
            report.error(path, "must not be empty (omit rate_limit for a route without limits)")
        items = [((*path, index), item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    names: list[str] = []
    for item_path, item in items:
        if not isinstance(item, str) or not item:
            report.error(item_path, f"expected a rate limit name, got {_shown(item)}")
            continue
        if item not in limit_names:
            suggestion = _suggest(item, limit_names)
            known = f"; defined: {', '.join(sorted(limit_names))}" if limit_names and not suggestion else ""
            report.error(item_path, f"unknown rate limit {item!r}{suggestion}{known}")
            continue
        if item in names:
            report.error(item_path, f"rate limit {item!r} is listed twice")
            continue
        names.append(item)
    return tuple(names)
