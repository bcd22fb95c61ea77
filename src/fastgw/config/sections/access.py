"""`access` (top level and per route): IP allow and deny lists on the client address, the address
as resolved through `trusted_proxies`."""

from __future__ import annotations

from typing import Any

from ..model import Access, IPNetwork
from ..report import Context, Report, section, sequence
from ..validators import validate_network
from ..yamlsrc import Path

__all__ = ["validate_access", "validate_global_access"]


def validate_access(report: Report, path: Path, value: Any) -> Access | None:
    """`{allow: [CIDR...], deny: [CIDR...]}`; a bare address is a /32 (or /128)."""
    present = section(report, path, value, ("allow", "deny"))
    if present is None:
        return None
    lists: dict[str, tuple[IPNetwork, ...]] = {}
    for key in ("allow", "deny"):
        networks: list[IPNetwork] = []
        if key in present:
            for index, item in enumerate(sequence(report, (*path, key), present[key])):
                network = report.check((*path, key, index), item, validate_network, None)
                if network is not None:
                    networks.append(network)
        lists[key] = tuple(networks)
    if not present.get("allow") and not present.get("deny"):
        report.error(path, "needs at least one network in 'allow' or 'deny'")
        return None
    for network in lists["deny"]:
        if network in lists["allow"]:
            report.error((*path, "deny"), f"{network} is both allowed and denied")
    return Access(allow=lists["allow"], deny=lists["deny"])


def validate_global_access(report: Report, path: Path, value: Any, context: Context) -> Access | None:
    return validate_access(report, path, value)
