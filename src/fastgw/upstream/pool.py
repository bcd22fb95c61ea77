"""Per-worker upstream state: keep-alive pools per target and the group that picks a target.

The pools (`TargetPool`), their targets' state, the balancers and the group are compiled
(`fastgw._proxy`, `_proxy_src/upstreams.pyx`), because the exchange calls them on every request;
the connections (`fastgw.upstream.connection.UpstreamConnection`) parse responses and hand them to
the client exchange they are bound to. `UpstreamGroup` puts one upstream's pools together.
"""
from __future__ import annotations

import asyncio

from fastgw._proxy import Clock, TargetGroup, TargetPool
from fastgw.config.model import Upstream
from fastgw.upstream import connection as _connection  # noqa: F401  (gives the pools their connection class)
from fastgw.upstream.shared import GroupView


class UpstreamGroup(TargetGroup):
    """The targets of one upstream with their pools. Picking, retries and health are
    `TargetGroup`'s: `pick`, `on_request`, `retry`, `retry_statuses`, `tick`."""

    def __init__(
        self, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop, view: GroupView | None = None
    ) -> None:
        pools = [TargetPool(t, upstream, clock, loop) for t in upstream.targets]
        super().__init__(upstream, pools, [p.label for p in pools], clock, view)
        self.default_host_line = b"host: %s\r\n" % pools[0].label.encode()
        """For HTTP/1.0 clients that sent no Host: the first target's address."""
