"""`listen` and `admin`: the addresses the gateway accepts connections on, which must not take each
other's connections."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from ..model import Address, Admin, Listener
from ..report import Context, Report, section, sequence
from ..validators import file_path, validate_address, validate_bool, validate_string
from ..yamlsrc import Path, format_path
from .tls import validate_listener_tls

__all__ = ["validate_admin", "validate_listen"]



def validate_listen(report: Report, path: Path, value: Any, context: Context) -> tuple[Listener, ...]:
    listeners: list[tuple[Path, Listener]] = []
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        item_path = (*path, index)
        if isinstance(item, str):
            report.error(item_path, f'expected a mapping, got string (write {{address: "{item}"}})')
            continue
        present = section(report, item_path, item, ("address", "underscores_in_headers", "tls"), required=("address",))
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
        underscores = report.check(
            (*item_path, "underscores_in_headers"), present.get("underscores_in_headers", False), validate_bool, False
        )
        tls = validate_listener_tls(report, (*item_path, "tls"), present["tls"], context) if "tls" in present else None
        if "tls" in present and tls is None:
            continue
        listeners.append((item_path, Listener(address, underscores, tls)))
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


ADMIN_KEYS = ("address", "token", "token_file")
MIN_TOKEN = 16
"""Characters an admin token needs at least (a guessable one is no protection)."""


def validate_admin(report: Report, path: Path, value: Any, context: Context) -> Admin | None:
    present = section(report, path, value, ADMIN_KEYS, required=("address",))
    if present is None or "address" not in present:
        return None
    address = report.check((*path, "address"), present["address"], validate_address, None)
    token = None
    if "token" in present and "token_file" in present:
        report.error((*path, "token_file"), "give either token or token_file, not both", at_key=True)
    elif "token" in present:
        token = report.check((*path, "token"), present["token"], validate_token, None)
    elif "token_file" in present:
        token = report.check((*path, "token_file"), present["token_file"], _token_file(context.base_dir), None)
    if address is None:
        return None
    for index, listener in enumerate(context.validated.get("listen", ())):
        clash = _overlap(address, listener.address)
        if clash:
            report.error((*path, "address"), f"{clash} listen[{index}] ({listener.address})")
            break
    else:
        if token is None and "token" not in present and "token_file" not in present and not is_loopback(address):
            report.error(
                (*path, "address"),
                f"{address} is not a loopback address, so the admin API needs a token (token or token_file): "
                "it reloads the gateway and shows its configuration",
            )
    return Admin(address, token)


def is_loopback(address: Address) -> bool:
    """127.0.0.0/8, ::1 or `localhost`."""
    if address.host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def validate_token(value: Any) -> str:
    """A bearer token as clients send it: visible ASCII without spaces, at least MIN_TOKEN long."""
    text = validate_string(value)
    if any(not 0x21 <= ord(c) <= 0x7E for c in text):
        raise ValueError("a token is visible ASCII characters without spaces")
    if len(text) < MIN_TOKEN:
        raise ValueError(f"a token needs at least {MIN_TOKEN} characters, got {len(text)}")
    return text


def _token_file(base_dir: str) -> Callable[[Any], str]:
    resolve = file_path(base_dir)

    def read_token_file(value: Any) -> str:
        path = resolve(value)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ValueError(f"cannot read {path}: {reason}") from None
        if not text:
            raise ValueError(f"{path} is empty")
        try:
            return validate_token(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    return read_token_file
