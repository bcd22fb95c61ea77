"""WebSocket ↔ HTTP bridge (issue 12, item 3): routes with `websocket: {bridge: ...}` terminate
WebSocket at the gateway; messages become HTTP POSTs to an upstream and answers become messages;
connect and disconnect are calls too; the backend pushes through the admin API
(`POST /connections/{id}`), which the master forwards to the worker holding the connection
(channel.py says how and why). docs/configuration.md#websocket has every key."""

from .hub import BridgeHub, attach_bridge
from .responder import BridgeResponder, route_bridge_responder

__all__ = ["BridgeHub", "BridgeResponder", "attach_bridge", "route_bridge_responder"]
