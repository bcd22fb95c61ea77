"""The addresses a load test may send to: loopback only (127.0.0.0/8, ::1, localhost), so that a
benchmark can never be pointed at someone else's machine by a typo."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def parse_loopback_url(url: str, option: str, allow_ipv6: bool = False) -> tuple[str, int, str]:
    """`url` as (host, port, path with its query); ValueError naming `option` unless it is an
    http:// URL on a loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{option} {url}: only http:// URLs")
    host = parts.hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{option} {url}: the host must be a loopback address (127.0.0.0/8, ::1, localhost)")
    if ":" in host and not allow_ipv6:
        raise ValueError(f"{option} {url}: IPv6 backends are not supported by the bench configs; use 127.0.0.1")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"{option} {url}: not a valid port") from None
    path = parts.path or "/"
    return host, port, path + (f"?{parts.query}" if parts.query else "")


def http_url(host: str, port: int, path: str) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
