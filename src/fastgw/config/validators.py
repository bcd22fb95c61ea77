"""Leaf validators for the value types any section may use: a plain value in, the model value out,
or ValueError with a message fit to follow the key path.

They are pure, so each can be tested on its own. Syntax that only one section has (route patterns,
balance policies, Redis URLs, …) is validated in that section's module.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any

from fastgw._proxy import owned_header_reason

from .model import Address, IPNetwork
from .report import shown
from .units import parse_duration, parse_size

__all__ = [
    "MAX_WORKERS",
    "TOKEN",
    "editable_header",
    "file_path",
    "int_between",
    "is_dns_name",
    "is_ipv4",
    "is_port",
    "one_of",
    "size_at_least",
    "validate_address",
    "validate_bool",
    "validate_duration",
    "validate_header_name",
    "validate_header_value",
    "validate_host",
    "validate_network",
    "validate_percent",
    "validate_positive_duration",
    "validate_size",
    "validate_string",
    "validate_workers",
]

MAX_WORKERS = 1024
# An HTTP token (RFC 9110 §5.6.2): header names, methods.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")

def validate_workers(value: Any) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, got {value}")
    raise ValueError(f"expected 'auto' or an integer from 1 to {MAX_WORKERS}, got {shown(value)}")


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
            raise ValueError(f"expected an integer, got {shown(value)}")
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
        raise ValueError(f"expected true or false, got {shown(value)}")
    return value


def validate_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {shown(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def one_of(*choices: str) -> Callable[[Any], str]:
    def validate_choice(value: Any) -> str:
        if value not in choices:
            options = ", ".join(choices)
            raise ValueError(f"expected one of {options}, got {shown(value)}")
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


def validate_percent(value: Any) -> float:
    """`20%` → 0.2. A bare number is refused: 0.2 and 20 would both be plausible readings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write a percentage such as 50% (a bare number is ambiguous), got {shown(value)}")
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)%", value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a percentage such as 50%, got {shown(value)}")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"must be from 0% to 100%, got {value}")
    return percent / 100


def validate_host(value: str) -> str:
    """A host as written in an address: an IP literal (IPv6 without brackets) or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value or not is_dns_name(value.lower()):
        raise ValueError(f"{value!r} is not an IP address or host name")
    return value


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def is_dns_name(name: str) -> bool:
    """Lower-case DNS name syntax; an all-digit last label is refused so that a mistyped IPv4
    address such as 10.0.0.256 is not taken for a name."""
    labels = name.split(".")
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def is_port(text: str) -> bool:
    """A TCP port as written in an address: digits only, from 1 to 65535."""
    return _PORT.fullmatch(text) is not None and 1 <= int(text) <= 65535


def validate_address(value: Any) -> Address:
    """`HOST:PORT`, with IPv6 hosts in brackets (`[::1]:8080`)."""
    if not isinstance(value, str):
        raise ValueError(f'expected an address "HOST:PORT", got {shown(value)}')
    if "://" in value:
        raise ValueError(_url_advice(value))
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
    if not is_port(port):
        raise ValueError(f"port must be from 1 to 65535, got {port!r}")
    return Address(validate_host(host), int(port))


def _url_advice(url: str) -> str:
    """What to write instead of a URL where an address is expected."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if authority and not (authority.rpartition(":")[2].isdigit() and not authority.endswith("]")):
        default = {"http": 80, "https": 443}.get(scheme)
        authority = f"{authority}:{default}" if default else authority
    advice = "an address is HOST:PORT, not a URL" + (f": write {authority!r}" if authority else "")
    if scheme == "https":
        advice += " (TLS is not part of an address: it is the `tls` key of an upstream or listener)"
    return advice


def validate_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address or CIDR string, got {shown(value)}")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)") from None


def validate_header_name(value: Any) -> str:
    """A header name, lower-cased (HTTP header names are case-insensitive)."""
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a valid header name")
    return value.lower()


def editable_header(direction: str) -> Callable[[Any], str]:
    """A validator for a header name that a route may set or remove in `direction` (request or
    response): not one the gateway owns (the exchange's own header table, so the two agree)."""

    def validate_editable_header(value: Any) -> str:
        name = validate_header_name(value)
        reason = owned_header_reason(name, direction)
        if reason is not None:
            raise ValueError(f"{value!r} cannot be set or removed: {reason}")
        return name

    return validate_editable_header


def validate_header_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"header values must be strings (quote it), got {shown(value)}")
    for char in value:
        if char in "\r\n\0":
            raise ValueError("header values must not contain CR, LF or NUL")
        if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            raise ValueError(f"header values must not contain control character {char!r}")
        if not char.isascii():
            raise ValueError(f"header values must be ASCII, found {char!r}")
    return value
