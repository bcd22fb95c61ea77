"""`listen` and `admin`: the addresses the gateway accepts connections on, which must not take each
other's connections."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model import Address, Listener
from ..report import Context, Report, section, sequence
from ..validators import validate_address, validate_bool
from ..yamlsrc import Path, format_path

__all__ = ["validate_admin", "validate_listen"]

LISTEN_UNSUPPORTED = ("tls",)


def validate_listen(report: Report, path: Path, value: Any, context: Context) -> tuple[Listener, ...]:
    listeners: list[tuple[Path, Listener]] = []
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        item_path = (*path, index)
        if isinstance(item, str):
            report.error(item_path, f'expected a mapping, got string (write {{address: "{item}"}})')
            continue
        present = section(
            report, item_path, item, ("address", "underscores_in_headers"), required=("address",),
            unsupported=LISTEN_UNSUPPORTED,
        )
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
        listeners.append((item_path, Listener(address, underscores)))
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


def validate_admin(report: Report, path: Path, value: Any, context: Context) -> Address | None:
    present = section(report, path, value, ("address",), required=("address",))
    if present is None or "address" not in present:
        return None
    address = report.check((*path, "address"), present["address"], validate_address, None)
    if address is None:
        return None
    for index, listener in enumerate(context.validated.get("listen", ())):
        clash = _overlap(address, listener.address)
        if clash:
            report.error((*path, "address"), f"{clash} listen[{index}] ({listener.address})")
            break
    return address
