"""`trusted_proxies`: the networks whose X-Forwarded-For the gateway extends instead of replacing."""

from __future__ import annotations

from typing import Any

from ..model import IPNetwork
from ..report import Context, Report, sequence
from ..validators import validate_network
from ..yamlsrc import Path

__all__ = ["validate_trusted_proxies"]


def validate_trusted_proxies(report: Report, path: Path, value: Any, context: Context) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for index, item in enumerate(sequence(report, path, value)):
        network = report.check((*path, index), item, validate_network, None)
        if network is not None:
            networks.append(network)
    return tuple(networks)
